"""The .balle file format: a header, a table of sections, the sections, a
checksum. All integers are big-endian.

Version 2 (written since tiled coding):

    offset  size    field
    0       4       magic b"BLLE"
    4       1       format version (2)
    5       1       image channels: 1 (gray) or 3 (RGB)
    6       8       model id: first 8 bytes of SHA-256 of the model's
                    configuration and weights (see CompressionModel)
    14      16      architecture name, ASCII, NUL-padded (b"bls2017": the
                    factorized prior)
    30      2       image height H (1..65535, JPEG's limit too)
    32      2       image width W
    34      2       tile size T in pixels: the image is coded in T x T tiles
                    in raster order (the last row and column may be smaller)
    36      4       section count S
    40      13 * S  section table; each entry: rank R (1..4), four uint16
                    dimensions (the first R nonzero, the rest 0), byte length
    ...     sum L   the sections' bytes, in table order
    end-4   4       Adler-32 of all bytes before it

Which sections a tile has, and their shapes, is the architecture's business
(`balle.coding.codec`): the factorized prior (bls2017) writes one section per
tile, the tile's range-coded latents of shape (ceil(h / 16), ceil(w / 16),
M); the scale hyperprior (bmshj2018) two, its hyper-latents (ceil(h / 64),
ceil(w / 64), N), then its latents (ceil(h / 16), ceil(w / 16), M).

Version 1 (read only): a fixed 28-byte header (magic, version 1, channels,
model id, H, W, latent height, latent width, N: uint16 each, payload length:
uint32), one payload (the whole image's latents), Adler-32. It is read as a
version-2 file with one section covering the whole image (tile size 0).

Adler-32 (RFC 1950) rather than CRC-32 because it can be computed with
vectorized tensor ops (its two sums have a closed form), so a SavedModel can
write and check it with TensorFlow alone. It catches accidents, not forgery:
anyone can recompute it, so every field is also checked for consistency, and
`unpack` refuses images above a pixel limit before anything is allocated.

`pack`/`unpack` are the Python implementation; `pack_tf`/`unpack_tf` are a
TensorFlow-op twin for files of one tile, with as many sections as the
model's tile has (what the SavedModel writes and reads); tests check that
they agree byte for byte.
"""

import dataclasses
import struct
import zlib

import tensorflow as tf

from balle.io.image_io import DEFAULT_MAX_PIXELS

MAGIC = b"BLLE"
VERSION = 2
VERSIONS_READ = (1, 2)
FACTORIZED_PRIOR = "bls2017"  # the architecture of every version-1 file
ARCHITECTURE_SIZE = 16
MAX_IMAGE_SIZE = 0xFFFF
MAX_RANK = 4
CHECKSUM_SIZE = 4

_HEADER = struct.Struct(f">4sBB8s{ARCHITECTURE_SIZE}sHHHI")
_ENTRY = struct.Struct(f">B{MAX_RANK}HI")
_HEADER_V1 = struct.Struct(">4sBB8sHHHHHI")
HEADER_SIZE = _HEADER.size  # 40
ENTRY_SIZE = _ENTRY.size  # 13
# Bytes a single-section file adds to its section: 57.
OVERHEAD_SIZE = HEADER_SIZE + ENTRY_SIZE + CHECKSUM_SIZE
_ADLER_MOD = 65521


class FormatError(ValueError):
  """The bytes are not a valid .balle file (or not for this model)."""


@dataclasses.dataclass(frozen=True)
class Header:
  """What a file says about its image. tile_size 0: one tile (version 1)."""
  channels: int
  model_id: bytes
  height: int
  width: int
  tile_size: int
  architecture: str = FACTORIZED_PRIOR
  version: int = VERSION


@dataclasses.dataclass(frozen=True)
class Section:
  """One entropy-coded tensor: its shape and its bytes."""
  shape: tuple
  data: bytes


def tile_count(height, width, tile_size):
  """How many tiles `tiles` gives, without listing them."""
  if tile_size == 0:
    return 1
  return -(-height // tile_size) * -(-width // tile_size)


def tiles(height, width, tile_size):
  """The tiles' pixel rectangles (top, left, bottom, right), raster order;
  tile_size 0 is one tile covering the image."""
  size_y = tile_size or height
  size_x = tile_size or width
  return [(top, left, min(top + size_y, height), min(left + size_x, width))
          for top in range(0, height, size_y)
          for left in range(0, width, size_x)]


def pack(header, sections):
  """Returns the complete version-2 file bytes for a header and sections."""
  _check_header(header)
  if not 1 <= len(sections) <= 0xFFFFFFFF:
    raise FormatError(f"a file holds 1..2^32-1 sections, not {len(sections)}")
  table = []
  for section in sections:
    shape = tuple(int(d) for d in section.shape)
    if not 1 <= len(shape) <= MAX_RANK or not all(
        1 <= d <= 0xFFFF for d in shape):
      raise FormatError(f"section shape {shape} does not fit the format")
    table.append(_ENTRY.pack(len(shape), *shape, *[0] * (MAX_RANK - len(shape)),
                             len(section.data)))
  head = _HEADER.pack(MAGIC, VERSION, header.channels, header.model_id,
                      header.architecture.encode("ascii"), header.height,
                      header.width, header.tile_size, len(sections))
  return with_checksum(
      b"".join([head, *table, *(bytes(s.data) for s in sections)]))


def with_checksum(body):
  """`body` followed by its Adler-32, the last 4 bytes of a file (a test or
  fuzzer that rewrites a file's bytes recomputes it with this)."""
  return body + struct.pack(">I", zlib.adler32(body))


def unpack(data, max_pixels=DEFAULT_MAX_PIXELS):
  """Parses and validates file bytes; returns (Header, [Section]).

  Raises FormatError naming the problem: not a .balle file, unsupported
  version, truncated, trailing bytes, checksum mismatch, inconsistent fields,
  or an image above `max_pixels` (checked before the checksum, so a forged
  size is refused before any work proportional to it).
  """
  data = bytes(data)
  if len(data) < len(MAGIC) + 1 or data[:len(MAGIC)] != MAGIC:
    raise FormatError("not a .balle file (magic bytes missing)")
  version = data[len(MAGIC)]
  if version not in VERSIONS_READ:
    raise FormatError(f"unsupported format version {version} (this reader "
                      f"knows versions {', '.join(map(str, VERSIONS_READ))})")
  if version == 1:
    header, entries, body_size = _unpack_header_v1(data)
  else:
    header, entries, body_size = _unpack_header_v2(data)
  _check_header(header)
  pixels = header.height * header.width
  if max_pixels is not None and pixels > max_pixels:
    raise FormatError(f"image of {header.width}x{header.height} = {pixels} "
                      f"pixels is above the limit of {max_pixels} pixels "
                      "(max_pixels)")
  expected_size = body_size + CHECKSUM_SIZE
  if len(data) < expected_size:
    raise FormatError(f"file is truncated: {len(data)} bytes, header "
                      f"announces {expected_size}")
  if len(data) > expected_size:
    raise FormatError(f"file has {len(data) - expected_size} unexpected "
                      "trailing bytes")
  (checksum,) = struct.unpack_from(">I", data, body_size)
  if checksum != zlib.adler32(data[:body_size]):
    raise FormatError("file is corrupted: checksum mismatch")
  sections = []
  offset = body_size - sum(length for _, length in entries)
  for shape, length in entries:
    sections.append(Section(shape, data[offset:offset + length]))
    offset += length
  return header, sections


def _unpack_header_v1(data):
  if len(data) < _HEADER_V1.size + CHECKSUM_SIZE:
    raise FormatError(f"file is truncated: {len(data)} bytes, shorter than "
                      f"the {_HEADER_V1.size + CHECKSUM_SIZE}-byte header and "
                      "checksum")
  (_, version, channels, model_id, height, width, latent_height, latent_width,
   latent_channels, payload_size) = _HEADER_V1.unpack_from(data)
  header = Header(channels, model_id, height, width, tile_size=0,
                  version=version)
  if (latent_height, latent_width) != (-(-height // 16), -(-width // 16)):
    raise FormatError("latent shape does not match the image size")
  if latent_channels == 0:
    raise FormatError("invalid latent channel count 0")
  shape = (latent_height, latent_width, latent_channels)
  return header, [(shape, payload_size)], _HEADER_V1.size + payload_size


def _unpack_header_v2(data):
  if len(data) < HEADER_SIZE + CHECKSUM_SIZE:
    raise FormatError(f"file is truncated: {len(data)} bytes, shorter than "
                      f"the {HEADER_SIZE}-byte header and checksum")
  (_, version, channels, model_id, architecture, height, width, tile_size,
   count) = _HEADER.unpack_from(data)
  name = architecture.rstrip(b"\0")
  if not name or not all(0x21 <= c < 0x7F for c in name) or (
      b"\0" in name):
    raise FormatError(f"invalid architecture name {architecture!r}")
  header = Header(channels, model_id, height, width, tile_size,
                  name.decode("ascii"), version)
  if tile_size == 0:
    raise FormatError("invalid tile size 0")
  table_end = HEADER_SIZE + count * ENTRY_SIZE
  if count == 0 or table_end + CHECKSUM_SIZE > len(data):
    raise FormatError(f"file is truncated or corrupted: {count} sections "
                      f"announced in {len(data)} bytes")
  entries = []
  for index in range(count):
    rank, *dims, length = _ENTRY.unpack_from(data,
                                             HEADER_SIZE + index * ENTRY_SIZE)
    if not 1 <= rank <= MAX_RANK or 0 in dims[:rank] or any(dims[rank:]):
      raise FormatError(f"section {index} has an invalid shape (rank {rank}, "
                        f"dimensions {dims})")
    entries.append((tuple(dims[:rank]), length))
  return header, entries, table_end + sum(length for _, length in entries)


def _check_header(header):
  if header.channels not in (1, 3):
    raise FormatError(f"invalid channel count {header.channels}")
  if not (1 <= header.height <= MAX_IMAGE_SIZE and
          1 <= header.width <= MAX_IMAGE_SIZE):
    raise FormatError(f"image size {header.width}x{header.height} is outside "
                      f"the format's range 1..{MAX_IMAGE_SIZE} per side")
  if len(header.model_id) != 8:
    raise FormatError("a model id has 8 bytes")
  if not 0 < len(header.architecture) <= ARCHITECTURE_SIZE:
    raise FormatError(f"architecture name {header.architecture!r} does not "
                      f"fit {ARCHITECTURE_SIZE} bytes")


# -- TensorFlow-op implementation, for SavedModels ------------------------------

_BYTE_STRINGS = [bytes([i]) for i in range(256)]


def _be_bytes(values, size):
  """Big-endian bytes (`size` each) of non-negative integer tensor `values`
  (a scalar or a vector), concatenated into a scalar string tensor."""
  shifts = tf.constant([8 * (size - 1 - i) for i in range(size)], tf.int64)
  digits = tf.bitwise.bitwise_and(
      tf.bitwise.right_shift(tf.expand_dims(tf.cast(values, tf.int64), -1),
                             shifts), 0xFF)
  return tf.strings.reduce_join(
      tf.gather(tf.constant(_BYTE_STRINGS), digits))


def adler32_tf(data):
  """Adler-32 of a scalar string tensor, in closed form (int64 tensor).

  A = 1 + sum_i b_i,  B = n + sum_i (n - i) b_i  (both mod 65521, i from 0);
  checksum = B * 65536 + A. Exact in int64 for files below ~30 MB.
  """
  values = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
  n = tf.size(values, out_type=tf.int64)
  weights = n - tf.range(n, dtype=tf.int64)
  a = (1 + tf.reduce_sum(values)) % _ADLER_MOD
  b = (n + tf.reduce_sum(weights * values)) % _ADLER_MOD
  return b * 65536 + a


def _architecture_field(architecture):
  return architecture.encode("ascii").ljust(ARCHITECTURE_SIZE, b"\0")


def pack_tf(channels, model_id, architecture, image_shape, tile_size,
            sections):
  """`pack` in TensorFlow ops: channels an int32 scalar, image_shape an
  int32 [2] tensor, `sections` a sequence of pairs (scalar string tensor,
  int32 shape tensor of static length 1..4), as a model's `compress`
  returns them. The caller keeps sizes in the format's range (the SavedModel
  codes one tile)."""
  table, payloads = [], []
  for data, shape in sections:
    shape = tf.convert_to_tensor(shape, tf.int32)
    rank = shape.shape[0]
    table += [tf.constant(bytes([rank])),
              _be_bytes(tf.pad(shape, [[0, MAX_RANK - rank]]), 2),
              _be_bytes(tf.strings.length(data), 4)]
    payloads.append(data)
  body = tf.strings.join([
      tf.constant(MAGIC + bytes([VERSION])), _be_bytes(channels, 1),
      tf.constant(model_id), tf.constant(_architecture_field(architecture)),
      _be_bytes(image_shape, 2),
      tf.constant(struct.pack(">HI", tile_size, len(sections))),
      *table, *payloads])
  return tf.strings.join([body, _be_bytes(adler32_tf(body), 4)])


def _be_values(raw, size):
  """The big-endian unsigned integers of the last axis (`size` bytes) of
  uint8 or int64 `raw` [..., size], as int64 [...]."""
  shifts = tf.constant([8 * (size - 1 - i) for i in range(size)], tf.int64)
  return tf.reduce_sum(tf.bitwise.left_shift(tf.cast(raw, tf.int64), shifts),
                       axis=-1)


def _substr(data, offset, size):
  """Bytes [offset, offset + size) of scalar string `data` (ints or int64
  tensors)."""
  return tf.strings.substr(data, tf.cast(offset, tf.int64),
                           tf.cast(size, tf.int64))


def _be_int(data, offset, size):
  return _be_values(tf.io.decode_raw(_substr(data, offset, size), tf.uint8),
                    size)


def _assert_bytes_equal(value, expected, message):
  return tf.debugging.Assert(tf.equal(value, tf.constant(expected)), [message])


def unpack_tf(data, model_id, architecture, tile_size, section_shapes):
  """`unpack` and the codec's model and section checks in TensorFlow ops,
  for the version-2 files of one tile that a SavedModel reads: returns
  (channels, image_shape, sections), an int32 scalar, int32 [2] and a tuple
  of (scalar string, int32 shape) pairs as a model's `decompress` takes.

  `section_shapes(height, width)`, called with int32 scalar tensors, gives
  the shapes the tile's sections must have (the model's `section_shapes`).
  Raises InvalidArgumentError naming the first problem found, in the order
  of `unpack` and `codec.decompress_image`: magic, version, a section table
  that does not fit the file, truncation, trailing bytes, checksum,
  architecture, model id, channels, tile size, image size, section count,
  each section's shape. Each check runs after the ones before it passed, so
  it only reads bytes they have vouched for.
  """
  size = tf.cast(tf.strings.length(data), tf.int64)
  check = tf.debugging.assert_greater_equal(
      size, tf.constant(HEADER_SIZE + CHECKSUM_SIZE, tf.int64),
      message="file is truncated")
  with tf.control_dependencies([check]):
    check = _assert_bytes_equal(_substr(data, 0, len(MAGIC)), MAGIC,
                                "not a .balle file (magic bytes missing)")
  with tf.control_dependencies([check]):
    check = tf.debugging.assert_equal(
        _be_int(data, 4, 1), tf.constant(VERSION, tf.int64),
        message="unsupported format version")
  with tf.control_dependencies([check]):
    count = _be_int(data, 36, 4)
    table_end = HEADER_SIZE + ENTRY_SIZE * count
    check = tf.debugging.Assert(
        tf.logical_and(count > 0, table_end + CHECKSUM_SIZE <= size),
        ["file is truncated or corrupted: its section table does not fit "
         "the file"])
  with tf.control_dependencies([check]):
    entries = tf.reshape(tf.io.decode_raw(
        _substr(data, HEADER_SIZE, ENTRY_SIZE * count), tf.uint8),
                         [-1, ENTRY_SIZE])
    lengths = _be_values(entries[:, 1 + 2 * MAX_RANK:], 4)
    body_size = table_end + tf.reduce_sum(lengths)
    check = tf.debugging.assert_less_equal(
        body_size + CHECKSUM_SIZE, size,
        message="file is truncated: its section table announces more bytes "
        "than the file holds")
  with tf.control_dependencies([check]):
    check = tf.debugging.assert_equal(
        body_size + CHECKSUM_SIZE, size, message="file has trailing bytes")
  with tf.control_dependencies([check]):
    check = tf.debugging.assert_equal(
        _be_int(data, body_size, CHECKSUM_SIZE),
        adler32_tf(_substr(data, 0, body_size)),
        message="file is corrupted: checksum mismatch")
  for offset, expected, message in [
      (14, _architecture_field(architecture),
       "file was made by another architecture"),
      (6, model_id, "file was made by a different model"),
      (34, struct.pack(">H", tile_size),
       "file has another tile size than the SavedModel writes")]:
    with tf.control_dependencies([check]):
      check = _assert_bytes_equal(
          _substr(data, offset, len(expected)), expected, message)
  with tf.control_dependencies([check]):
    channels = tf.cast(_be_int(data, 5, 1), tf.int32)
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(channels, 1), tf.equal(channels, 3)),
        ["invalid channel count", channels])
  with tf.control_dependencies([check]):
    image_shape = tf.cast(tf.stack([_be_int(data, 30, 2),
                                    _be_int(data, 32, 2)]), tf.int32)
    check = tf.debugging.assert_greater(tf.reduce_min(image_shape), 0,
                                        message="invalid image size 0")
  with tf.control_dependencies([check]):
    check = tf.debugging.assert_less_equal(
        tf.reduce_max(image_shape), tile_size,
        message="the SavedModel decodes single-tile files only")
  expected_shapes = section_shapes(image_shape[0], image_shape[1])
  with tf.control_dependencies([check]):
    check = tf.debugging.assert_equal(
        count, tf.constant(len(expected_shapes), tf.int64),
        message=f"section count is not the {len(expected_shapes)} of one "
        f"{architecture} tile (the SavedModel decodes single-tile files "
        "only)")
  # Per section: rank and MAX_RANK dimensions (the unused ones 0).
  ranks_and_dims = tf.concat([
      tf.cast(entries[:, :1], tf.int64),
      _be_values(tf.reshape(entries[:, 1:1 + 2 * MAX_RANK], [-1, MAX_RANK, 2]),
                 2)], 1)
  fields = []
  for index, shape in enumerate(expected_shapes):
    rank = len(shape)
    fields.append(tf.cast(
        tf.stack([rank, *shape, *[0] * (MAX_RANK - rank)]), tf.int64))
    with tf.control_dependencies([check]):
      check = tf.debugging.assert_equal(
          ranks_and_dims[index], fields[-1],
          message=f"section {index} shape does not match the image size and "
          "the model")
  starts = table_end + tf.cumsum(lengths, exclusive=True)
  with tf.control_dependencies([check]):
    return (tf.identity(channels), tf.identity(image_shape), tuple(
        (_substr(data, starts[index], lengths[index]),
         tf.cast(field[1:1 + len(shape)], tf.int32))
        for index, (shape, field) in enumerate(zip(expected_shapes, fields))))
