"""Images to .balle file bytes and back, with a trained, frozen model, in
tiles so that memory is bounded by the tile size rather than the image.

The codec talks to the model's `CompressionModel` interface: its
architecture name, downsampling factor, `section_shapes` and whole-image
`compress`/`decompress`. Tiling and the re-encoding check (`_TileCoder`) are
written for architectures that code a tile as one latent tensor with
`analysis`, `entropy_model` and `synthesis` (bls2017).

Tiling: the image is cut into TILE_SIZE x TILE_SIZE tiles. The encoder runs
g_a on each tile plus HALO_LATENTS latents' worth of its neighbours' pixels,
keeps the tile's own latents and range-codes them as one section; the decoder
range-decodes every section into the latent grid, then runs g_s on each
tile's latents plus HALO_LATENTS latents of its neighbours and keeps the
tile's own pixels. The halo covers the transforms' receptive fields, so tiled
latents and pixels equal whole-image ones up to float rounding. An image that
fits one tile is coded whole by the model's own `compress`/`decompress`, the
functions the SavedModel exports, so both write the same bytes.

Decoding is bounded and checked: `file_format.unpack` refuses images above
`max_pixels` before any allocation, every section's shape must be the one its
tile implies, and each section must be exactly what the range coder writes
for the latents it decodes to (decoded latents are re-encoded and compared),
so an empty, forged, shifted or damaged payload is a FormatError, not an
image of garbage.
"""

import weakref

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from balle import file_format
from balle.file_format import FormatError

TILE_SIZE = 1024  # pixels per tile side in files written here
HALO_LATENTS = 4  # context around a tile, in latents (64 pixels for bls2017)
# Tiles a decoded file may have: what TILE_SIZE gives at 65535 x 65535.
# Bounds the per-section work a small forged file can ask for.
MAX_TILES = 4096


def _ceil_div(a, b):
  return -(-a // b)


def compress_image(model, image, tile_size=TILE_SIZE):
  """uint8 array [H, W, C] -> complete file bytes.

  C must equal the model's channel count; an RGB model also takes grayscale
  images (C = 1), which it codes as R = G = B and decodes back to gray.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3:
    raise ValueError(f"expected a uint8 array [H, W, C], got {image.dtype} "
                     f"with shape {image.shape}")
  height, width, channels = image.shape
  if channels not in (1, model.config.channels):
    raise ValueError(f"a {channels}-channel image cannot be coded with a "
                     f"{model.config.channels}-channel model")
  if not (1 <= height <= file_format.MAX_IMAGE_SIZE and
          1 <= width <= file_format.MAX_IMAGE_SIZE):
    raise ValueError(f"image size {height}x{width} is outside the supported "
                     f"range 1..{file_format.MAX_IMAGE_SIZE} per side")
  factor = model.downsampling_factor
  if tile_size <= 0 or tile_size % factor:
    raise ValueError(f"tile size {tile_size} is not a positive multiple of "
                     f"{factor}")
  if height <= tile_size and width <= tile_size:
    sections = [
        file_format.Section(tuple(int(v) for v in shape.numpy()),
                            data.numpy())
        for data, shape in model.compress(tf.constant(image))]
  else:
    coder = _TileCoder.of(model)
    sections = [coder.encode_tile(image, rect)
                for rect in file_format.tiles(height, width, tile_size)]
  header = file_format.Header(
      channels=channels, model_id=model.model_id, height=height, width=width,
      tile_size=tile_size, architecture=model.ARCHITECTURE)
  return file_format.pack(header, sections)


def decompress_image(data, model, max_pixels=file_format.DEFAULT_MAX_PIXELS):
  """Complete file bytes -> uint8 array [H, W, C].

  Raises FormatError (a ValueError) if the bytes are not a valid file, the
  image is above `max_pixels` (None: no limit), or the file was written by a
  different model than `model`.
  """
  header, sections = file_format.unpack(data, max_pixels=max_pixels)
  check_model(header, model)
  rects = file_format.tiles(header.height, header.width, header.tile_size)
  _check_sections(header, rects, sections, model)
  coder = _TileCoder.of(model)
  if len(rects) == 1 and max(header.height, header.width) <= TILE_SIZE:
    # One tile: the model's own (and the SavedModel's) whole-image decoder.
    coder.decode_latents(sections[0], 0)  # the consistency check
    return model.decompress(
        tuple((tf.constant(s.data), tf.constant(s.shape, tf.int32))
              for s in sections),
        tf.constant([header.height, header.width], tf.int32),
        tf.constant(header.channels, tf.int32)).numpy()
  factor = model.downsampling_factor
  latents = np.empty((_ceil_div(header.height, factor),
                      _ceil_div(header.width, factor),
                      model.config.num_filters), np.float32)
  for index, (rect, section) in enumerate(zip(rects, sections)):
    top, left = (v // factor for v in rect[:2])
    height, width = section.shape[:2]
    latents[top:top + height, left:left + width] = coder.decode_latents(
        section, index)
  # g_s runs on tiles of TILE_SIZE whatever the coded tiles (version 1: one).
  image = np.empty((header.height, header.width, header.channels), np.uint8)
  for rect in file_format.tiles(header.height, header.width, TILE_SIZE):
    image[rect[0]:rect[2], rect[1]:rect[3]] = coder.decode_tile(
        latents, rect, header.channels)
  return image


def _check_sections(header, rects, sections, model):
  """Every tile has the sections `model.section_shapes` gives its size."""
  if header.tile_size % model.downsampling_factor:
    raise FormatError(f"tile size {header.tile_size} is not a multiple of "
                      f"{model.downsampling_factor}")
  if len(rects) > MAX_TILES:
    raise FormatError(f"{len(rects)} tiles of {header.tile_size} pixels are "
                      f"more than the decoder accepts ({MAX_TILES})")
  expected = [shape for rect in rects for shape in model.section_shapes(
      rect[2] - rect[0], rect[3] - rect[1])]
  if len(sections) != len(expected):
    raise FormatError(f"file has {len(sections)} sections for "
                      f"{len(rects)} tiles")
  for index, (shape, section) in enumerate(zip(expected, sections)):
    if tuple(section.shape) != tuple(shape):
      raise FormatError(f"section {index} has shape {section.shape}; its "
                        f"tile of the {header.width}x{header.height} image "
                        f"needs {shape}")


def check_model(header, model):
  """Raises FormatError unless `model` is the one that wrote `header`."""
  if header.architecture != model.ARCHITECTURE:
    raise FormatError(f"file was made by a {header.architecture!r} model, "
                      f"not by a {model.ARCHITECTURE!r} one")
  if header.model_id != model.model_id:
    raise FormatError(
        f"file was made by model {header.model_id.hex()}, not by the given "
        f"model {model.config.name} ({model.model_id.hex()})")
  if header.channels not in (1, model.config.channels):
    raise FormatError(f"file has {header.channels} channels, the model "
                      f"{model.config.channels}")


# The range decoder reads zeros past the end of its data, and decodes an
# escaped (large) value by counting 0 bits: past the end that count runs to
# 2^31 per value, minutes for a forged payload. So the decoder gets the data,
# then zeros (a valid code may rely on a few implicit ones), then 1 bits,
# which end every count at once. Each value read from 1 bits is an escape
# (the top interval, at least 2^-12 wide: at most 12 bits) with a 1-bit
# length and a sign bit, so 2 bytes per value cannot run out. A section that
# reads into the padding is not a valid code: the re-encoding check rejects it.
_ZERO_PADDING_BYTES = 64
_ONE_BITS_BYTES_PER_VALUE = 2


_DECODE_SLICE_VALUES = 1 << 22


def _pad_for_decoding(data, values):
  """Python bytes `data` followed by the padding above, for `values` values."""
  return (data + bytes(_ZERO_PADDING_BYTES) +
          b"\xff" * (_ONE_BITS_BYTES_PER_VALUE * values))


def range_decode(entropy_model, data, shape):
  """`entropy_model.decompress` of one string (a scalar string tensor) into
  latents of `shape` [h, w, N], with the padding above and without tfc's
  sanity check: callers check that the latents re-encode to `data`
  (`check_range_code`). In TensorFlow ops, for the SavedModel's one tile;
  `_TileCoder.decode_latents` is the same in slices."""
  values = tf.reduce_prod(tf.cast(shape, tf.int64))
  padded = tf.strings.join([
      data, tf.constant(bytes(_ZERO_PADDING_BYTES)),
      tf.strings.reduce_join(tf.fill([_ONE_BITS_BYTES_PER_VALUE * values],
                                     tf.constant(b"\xff")))])
  handle = tfc.create_range_decoder(padded[None], entropy_model.cdf)
  _, symbols = tfc.entropy_decode_channel(
      handle, tf.cast(shape, tf.int32), entropy_model.cdf_offset.dtype)
  latents = tf.cast(symbols + entropy_model.cdf_offset,
                    entropy_model.bottleneck_dtype)
  offset = entropy_model.quantization_offset
  return latents if offset is None else latents + offset


def check_range_code(entropy_model, latents, data):
  """A bool tensor: is `data` exactly the range coding of `latents`?"""
  return tf.equal(entropy_model.compress(latents)[0], data)


class _TileCoder:
  """One model's per-tile coding functions (traced once per tile shape)."""

  _cache = weakref.WeakKeyDictionary()

  @classmethod
  def of(cls, model):
    if model not in cls._cache:
      cls._cache[model] = cls(model)
    return cls._cache[model]

  def __init__(self, model):
    model._require_frozen()  # pylint: disable=protected-access
    if len(model.section_shapes(1, 1)) != 1:
      raise NotImplementedError(
          f"tiled coding of {model.ARCHITECTURE!r} models (several sections "
          "per tile) is not implemented")
    self.model = model
    self.stride = model.downsampling_factor
    self._analysis = tf.function(self._analyze, reduce_retracing=True)
    self._synthesis = tf.function(self._synthesize, reduce_retracing=True)

  # -- encoder --

  def _analyze(self, pixels, crop):
    """Range-codes latents[crop] of g_a(pixels); crop = [top, left, h, w]."""
    latents = self.model.analysis(tf.cast(pixels, tf.float32)[None] / 255.)
    latents = latents[:, crop[0]:crop[0] + crop[2],
                      crop[1]:crop[1] + crop[3], :]
    return self.model.entropy_model.compress(latents)[0]

  def encode_tile(self, image, rect):
    """One tile's section: its latents, computed with a halo of context."""
    height, width, channels = image.shape
    halo = HALO_LATENTS * self.stride
    padded_height = _ceil_div(height, self.stride) * self.stride
    padded_width = _ceil_div(width, self.stride) * self.stride
    top, left = max(rect[0] - halo, 0), max(rect[1] - halo, 0)
    bottom = min(rect[2] + halo, padded_height)
    right = min(rect[3] + halo, padded_width)
    # The stride-aligned image extends the last row and column (as
    # model.replicate_edges_to_multiple does for whole images).
    pixels = image[top:min(bottom, height), left:min(right, width)]
    pixels = np.pad(pixels, ((0, bottom - min(bottom, height)),
                             (0, right - min(right, width)), (0, 0)),
                    mode="edge")
    if channels < self.model.config.channels:
      pixels = np.repeat(pixels, self.model.config.channels, axis=2)
    shape = (_ceil_div(rect[2] - rect[0], self.stride),
             _ceil_div(rect[3] - rect[1], self.stride))
    crop = [(rect[0] - top) // self.stride, (rect[1] - left) // self.stride,
            *shape]
    data = self._analysis(tf.constant(pixels), tf.constant(crop)).numpy()
    return file_format.Section((*shape, self.model.config.num_filters), data)

  # -- decoder --

  def decode_latents(self, section, index):
    """A section's latents [h, w, N]; FormatError unless the section is
    exactly what the range coder writes for them.

    `range_decode` and `check_range_code` in slices of latent rows, so that
    memory stays near 6 bytes per latent for version-1 files, whose one
    section holds the whole image."""
    entropy_model = self.model.entropy_model
    height, width, channels = section.shape
    rows = max(1, _DECODE_SLICE_VALUES // (width * channels))
    latents = np.empty(section.shape, np.float32)
    offset = entropy_model.quantization_offset
    try:
      decoder = tfc.create_range_decoder(
          tf.constant([_pad_for_decoding(section.data, latents.size)]),
          entropy_model.cdf)
      encoder = tfc.create_range_encoder([1], entropy_model.cdf)
      for top in range(0, height, rows):
        count = min(rows, height - top)
        decoder, symbols = tfc.entropy_decode_channel(
            decoder, [count, width, channels], entropy_model.cdf_offset.dtype)
        encoder = tfc.entropy_encode_channel(encoder, symbols)
        values = tf.cast(symbols[0] + entropy_model.cdf_offset,
                         entropy_model.bottleneck_dtype)
        latents[top:top + count] = values if offset is None else (
            values + offset)
      recoded = tfc.entropy_encode_finalize(encoder).numpy()[0]
    except tf.errors.OpError as error:
      raise FormatError(f"section {index} is corrupted: the range decoder "
                        f"rejects it ({error.message.splitlines()[0]})"
                        ) from None
    if recoded != section.data:
      raise FormatError(f"section {index} is corrupted: its "
                        f"{len(section.data)} bytes are not a range coding of "
                        f"{'x'.join(map(str, section.shape))} latents")
    return latents

  def _synthesize(self, latents, crop, gray):
    """uint8 pixels[crop] of g_s(latents), crop = [top, left, h, w]; the
    rounding and the gray mean are model.decompress's."""
    pixels = self.model.synthesis(latents[None])[0]
    pixels = pixels[crop[0]:crop[0] + crop[2], crop[1]:crop[1] + crop[3]]
    image = tf.saturate_cast(tf.round(pixels * 255.), tf.uint8)
    if self.model.config.channels == 1:
      return image
    return tf.cond(
        gray,
        lambda: tf.cast((tf.reduce_sum(tf.cast(image, tf.int32), axis=2,
                                       keepdims=True) + 1) // 3, tf.uint8),
        lambda: image)

  def decode_tile(self, latents, rect, channels):
    """One tile's pixels from the latent grid, with a halo of context."""
    latent_height, latent_width = latents.shape[:2]
    top = max(rect[0] // self.stride - HALO_LATENTS, 0)
    left = max(rect[1] // self.stride - HALO_LATENTS, 0)
    bottom = min(_ceil_div(rect[2], self.stride) + HALO_LATENTS,
                 latent_height)
    right = min(_ceil_div(rect[3], self.stride) + HALO_LATENTS, latent_width)
    crop = [rect[0] - top * self.stride, rect[1] - left * self.stride,
            rect[2] - rect[0], rect[3] - rect[1]]
    return self._synthesis(
        tf.constant(latents[top:bottom, left:right]), tf.constant(crop),
        tf.constant(channels < self.model.config.channels)).numpy()
