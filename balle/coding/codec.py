"""Images to .balle file bytes and back, with a trained, frozen model, in
tiles so that memory is bounded by the tile size rather than the image.

The codec talks to the model's `CompressionModel` interface only: its
architecture name, downsampling factor, `section_shapes`, whole-image
`compress`/`decompress` and `tile_coder` (balle.coding.tiling), which codes the
tiles of the architecture's sections and decodes them back to the latents.

Tiling: the image is cut into TILE_SIZE x TILE_SIZE tiles, each coded as the
architecture's sections with halos of context (balle.coding.tiling), so tiled
latents and pixels equal whole-image ones. An image that fits one tile is
coded whole by the model's own `compress`/`decompress`, the functions the
SavedModel exports, so both write the same bytes.

Decoding is bounded and checked: `file_format.unpack` refuses images above
`max_pixels` before any allocation, every section's shape must be the one its
tile implies, and each section must be exactly what the range coder writes
for the values it decodes to (balle.coding.range_coding: decoded values are
re-encoded and compared), so an empty, forged, shifted or damaged section is
a FormatError, not an image of garbage; so is any error of TensorFlow's ops
on a file's contents.
"""

import numpy as np
import tensorflow as tf

from balle.coding import file_format
from balle.coding.file_format import FormatError

TILE_SIZE = 1024  # pixels per tile side in files written here
# Tiles a decoded file may have: what TILE_SIZE gives at 65535 x 65535.
# Bounds the per-section work a small forged file can ask for.
MAX_TILES = 4096
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
    sections = model.tile_coder().encode(
        image, file_format.tiles(height, width, tile_size))
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
  model = check_model(header, model)
  rects = check_sections(header, sections, model)
  coder = model.tile_coder()
  try:
    latents = coder.decode_latents(sections, rects, header.height,
                                   header.width)  # every section checked
    if len(rects) == 1 and max(header.height, header.width) <= TILE_SIZE:
      # One tile: the model's own (and the SavedModel's) whole-image decoder.
      return model.decompress(
          tuple((tf.constant(s.data), tf.constant(s.shape, tf.int32))
                for s in sections),
          tf.constant([header.height, header.width], tf.int32),
          tf.constant(header.channels, tf.int32)).numpy()
    # g_s runs on tiles of TILE_SIZE whatever the coded tiles (version 1:
    # one).
    return coder.decode_image(
        latents, header.height, header.width, header.channels,
        file_format.tiles(header.height, header.width, TILE_SIZE))
  except tf.errors.OpError as error:
    raise FormatError(f"file is corrupted: decoding fails "
                      f"({error.message.splitlines()[0]})") from None


def check_sections(header, sections, model):
  """The tiles' rectangles, once every tile is known to have the sections
  `model.section_shapes` gives its size (the tile size and count checked
  before any tile is listed: a forged size of 1 would list millions)."""
  if header.tile_size % model.downsampling_factor:
    raise FormatError(f"tile size {header.tile_size} is not a multiple of "
                      f"{model.downsampling_factor}")
  count = file_format.tile_count(header.height, header.width,
                                 header.tile_size)
  if count > MAX_TILES:
    raise FormatError(f"{count} tiles of {header.tile_size} pixels are "
                      f"more than the decoder accepts ({MAX_TILES})")
  rects = file_format.tiles(header.height, header.width, header.tile_size)
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
  return rects


def check_model(header, model):
  """The model that decodes `header`'s file: `model`, or its float-index
  twin for a file it wrote before its decoding choices were made exact
  (`CompressionModel.model_for_file`). Raises FormatError for another
  model's file."""
  if header.architecture != model.ARCHITECTURE:
    raise FormatError(f"file was made by a {header.architecture!r} model, "
                      f"not by a {model.ARCHITECTURE!r} one")
  decoder = model.model_for_file(header.model_id)
  if decoder is None:
    raise FormatError(
        f"file was made by model {header.model_id.hex()}, not by the given "
        f"model {model.config.name} ({model.model_id.hex()})")
  if header.channels not in (1, model.config.channels):
    raise FormatError(f"file has {header.channels} channels, the model "
                      f"{model.config.channels}")
  return decoder
