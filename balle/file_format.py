"""The .balle file format: a fixed 28-byte header, the payload, a checksum.

All integers are big-endian.

    offset  size  field
    0       4     magic b"BLLE"
    4       1     format version (1)
    5       1     image channels: 1 (gray) or 3 (RGB)
    6       8     model id: first 8 bytes of SHA-256 of the model's
                  configuration and weights (see FactorizedPriorModel)
    14      2     image height H (1..65535, JPEG's limit too)
    16      2     image width W
    18      2     latent height h = ceil(H / 16)
    20      2     latent width  w = ceil(W / 16)
    22      2     latent channels N (the model's filter count)
    24      4     payload length L in bytes
    28      L     range-coded latents (tensorflow-compression range coder)
    28+L    4     Adler-32 of bytes [0, 28+L)

Total overhead: 32 bytes. Adler-32 (RFC 1950) is used rather than CRC-32
because it can be computed with vectorized tensor ops (its two sums have a
closed form), so a SavedModel can write and check it with TensorFlow alone.

This module has two implementations of the same layout: `pack`/`unpack` in
Python for the library and CLI, and `pack_tf`/`unpack_tf` in TensorFlow ops for
the exported SavedModel. Tests check that they agree byte for byte.
"""

import dataclasses
import struct
import zlib

import tensorflow as tf

MAGIC = b"BLLE"
VERSION = 1
_HEADER = struct.Struct(">4sBB8sHHHHHI")
HEADER_SIZE = _HEADER.size  # 28
CHECKSUM_SIZE = 4
OVERHEAD_SIZE = HEADER_SIZE + CHECKSUM_SIZE
MAX_IMAGE_SIZE = 0xFFFF
_ADLER_MOD = 65521


class FormatError(ValueError):
  """The bytes are not a valid .balle file (or not for this model)."""


@dataclasses.dataclass(frozen=True)
class Header:
  channels: int
  model_id: bytes
  height: int
  width: int
  latent_height: int
  latent_width: int
  latent_channels: int


def pack(header, payload):
  """Returns the complete file bytes for a header and range-coded payload."""
  if not (1 <= header.height <= MAX_IMAGE_SIZE and
          1 <= header.width <= MAX_IMAGE_SIZE):
    raise FormatError(f"image size {header.height}x{header.width} is outside "
                      f"the format's range 1..{MAX_IMAGE_SIZE}")
  head = _HEADER.pack(MAGIC, VERSION, header.channels, header.model_id,
                      header.height, header.width, header.latent_height,
                      header.latent_width, header.latent_channels,
                      len(payload))
  body = head + payload
  return body + struct.pack(">I", zlib.adler32(body))


def unpack(data):
  """Parses and validates file bytes; returns (Header, payload).

  Raises FormatError naming the problem: not a .balle file, unsupported
  version, truncated, trailing bytes, checksum mismatch, inconsistent sizes.
  """
  data = bytes(data)
  if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
    raise FormatError("not a .balle file (magic bytes missing)")
  if len(data) < OVERHEAD_SIZE:
    raise FormatError(f"file is truncated: {len(data)} bytes, shorter than "
                      f"the {OVERHEAD_SIZE}-byte header and checksum")
  (_, version, channels, model_id, height, width, latent_height, latent_width,
   latent_channels, payload_size) = _HEADER.unpack_from(data)
  if version != VERSION:
    raise FormatError(f"unsupported format version {version} (this reader "
                      f"knows version {VERSION})")
  expected_size = OVERHEAD_SIZE + payload_size
  if len(data) < expected_size:
    raise FormatError(f"file is truncated: {len(data)} bytes, header "
                      f"announces {expected_size}")
  if len(data) > expected_size:
    raise FormatError(f"file has {len(data) - expected_size} unexpected "
                      "trailing bytes")
  (checksum,) = struct.unpack_from(">I", data, HEADER_SIZE + payload_size)
  if checksum != zlib.adler32(data[:HEADER_SIZE + payload_size]):
    raise FormatError("file is corrupted: checksum mismatch")
  header = Header(channels, model_id, height, width, latent_height,
                  latent_width, latent_channels)
  _check_consistent(header)
  return header, data[HEADER_SIZE:HEADER_SIZE + payload_size]


def _check_consistent(header):
  if header.channels not in (1, 3):
    raise FormatError(f"invalid channel count {header.channels}")
  if header.height == 0 or header.width == 0:
    raise FormatError("invalid image size 0")
  if (header.latent_height, header.latent_width) != (
      -(-header.height // 16), -(-header.width // 16)):
    raise FormatError("latent shape does not match the image size")


# -- TensorFlow-op implementation, for SavedModels ------------------------------

_BYTE_STRINGS = [bytes([i]) for i in range(256)]


def _be_bytes(value, size):
  """Big-endian bytes of a non-negative int64 scalar tensor, as a string."""
  shifts = tf.constant([8 * (size - 1 - i) for i in range(size)], tf.int64)
  digits = tf.bitwise.bitwise_and(
      tf.bitwise.right_shift(tf.cast(value, tf.int64), shifts), 0xFF)
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


def pack_tf(channels, model_id, image_shape, latent_shape, latent_channels,
            payload):
  """`pack` in TensorFlow ops: channels an int32 scalar, shapes int32 [2]
  tensors, payload a scalar string tensor."""
  fields = [
      tf.constant(MAGIC + bytes([VERSION])), _be_bytes(channels, 1),
      tf.constant(model_id),
      _be_bytes(image_shape[0], 2), _be_bytes(image_shape[1], 2),
      _be_bytes(latent_shape[0], 2), _be_bytes(latent_shape[1], 2),
      _be_bytes(latent_channels, 2),
      _be_bytes(tf.strings.length(payload), 4),
      payload,
  ]
  body = tf.strings.join(fields)
  return tf.strings.join([body, _be_bytes(adler32_tf(body), 4)])


def _be_int(data, offset, size):
  raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size),
                                 tf.uint8), tf.int64)
  shifts = tf.constant([8 * (size - 1 - i) for i in range(size)], tf.int64)
  return tf.reduce_sum(tf.bitwise.left_shift(raw, shifts))


def _assert_bytes_equal(value, expected, message):
  return tf.debugging.Assert(tf.equal(value, tf.constant(expected)), [message])


def unpack_tf(data, model_id, latent_channels):
  """`unpack` in TensorFlow ops: validates and returns
  (channels, image_shape, latent_shape, payload); raises InvalidArgumentError
  with a message naming the problem."""
  size = tf.strings.length(data)
  checks = [
      _assert_bytes_equal(tf.strings.substr(data, 0, len(MAGIC)), MAGIC,
                          "not a .balle file (magic bytes missing)"),
      tf.debugging.assert_greater_equal(
          size, OVERHEAD_SIZE, message="file is truncated"),
  ]
  with tf.control_dependencies(checks):
    version = _be_int(data, 4, 1)
    payload_size = tf.cast(_be_int(data, 24, 4), tf.int32)
  checks = [
      tf.debugging.assert_equal(
          version, tf.constant(VERSION, tf.int64),
          message="unsupported format version"),
      tf.debugging.assert_equal(
          size, OVERHEAD_SIZE + payload_size,
          message="file is truncated or has trailing bytes"),
  ]
  with tf.control_dependencies(checks):
    body = tf.strings.substr(data, 0, HEADER_SIZE + payload_size)
    checksum = _be_int(data, HEADER_SIZE + payload_size, 4)
  checks = [
      tf.debugging.assert_equal(checksum, adler32_tf(body),
                                message="file is corrupted: checksum mismatch"),
      _assert_bytes_equal(tf.strings.substr(data, 6, 8), model_id,
                          "file was made by a different model"),
      tf.debugging.assert_equal(
          _be_int(data, 22, 2), tf.constant(latent_channels, tf.int64),
          message="latent channel count does not match the model"),
  ]
  with tf.control_dependencies(checks):
    channels = tf.cast(_be_int(data, 5, 1), tf.int32)
    image_shape = tf.cast(tf.stack([_be_int(data, 14, 2),
                                    _be_int(data, 16, 2)]), tf.int32)
    latent_shape = tf.cast(tf.stack([_be_int(data, 18, 2),
                                     _be_int(data, 20, 2)]), tf.int32)
    payload = tf.strings.substr(data, HEADER_SIZE, payload_size)
  expected_latent = (image_shape + 15) // 16
  checks = [
      tf.debugging.assert_equal(
          latent_shape, expected_latent,
          message="latent shape does not match the image size"),
      tf.debugging.assert_greater(tf.reduce_min(image_shape), 0,
                                  message="invalid image size 0"),
  ]
  with tf.control_dependencies(checks):
    return (tf.identity(channels), tf.identity(image_shape),
            tf.identity(latent_shape), tf.identity(payload))
