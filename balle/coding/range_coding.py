"""Range decoding of untrusted sections, bounded and checked.

A section is one tensor range-coded by a tfc entropy model: a
`ContinuousBatchedEntropyModel` (one CDF per channel: bls2017's latents,
bmshj2018's hyper-latents) or a `LocationScaleIndexedEntropyModel` (one CDF
per value, chosen by an index tensor: bmshj2018's latents). Decoding one that
comes from a file must neither hang nor accept garbage:

- Bounded time: tfc's range decoder reads zeros past the end of its data and
  decodes an escaped (large) value by counting 0 bits, which past the end
  runs to 2^31 per value, minutes for a forged section. So the decoder gets
  the data, then zeros (a valid code may rely on a few implicit ones), then
  1 bits, which end every count at once. Each value read from 1 bits is an
  escape (the top interval, at least 2^-12 wide: at most 12 bits) with a
  1-bit length and a sign bit, so 2 bytes per value cannot run out.
- Exactness: the decoded values are range-coded again and must give exactly
  the section's bytes, so an empty, forged, shifted or damaged section (or
  one that reads into the padding) is a FormatError, not garbage latents.
- Errors of the range decoder ops are FormatErrors too.

`decode_section` does this in Python in slices of rows (memory near 6 bytes
per value, also for version-1 files whose one section is the whole image);
`range_decode` and `check_range_code` are the same in TensorFlow ops, for the
SavedModel.
"""

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from balle.coding.file_format import FormatError

_ZERO_PADDING_BYTES = 64
_ONE_BITS_BYTES_PER_VALUE = 2
_DECODE_SLICE_VALUES = 1 << 22


def _pad_for_decoding(data, values):
  """Python bytes `data` followed by the padding above, for `values` values."""
  return (data + bytes(_ZERO_PADDING_BYTES) +
          b"\xff" * (_ONE_BITS_BYTES_PER_VALUE * values))


def decode_section(entropy_model, section, index, indexes=None):
  """The values [h, w, C] (float32) of `section` (a file_format.Section of
  that shape), coded by `entropy_model`: batched (indexes None) or indexed
  (`indexes`, int32 [h, w, C], the distribution of each value, as given to
  its `compress`). FormatError, naming section `index`, unless the section
  is exactly what the range coder writes for them."""
  height, width, channels = section.shape
  rows = max(1, _DECODE_SLICE_VALUES // (width * channels))
  values = np.empty(section.shape, np.float32)
  cdf_offset = entropy_model.cdf_offset
  offset = getattr(entropy_model, "quantization_offset", None)
  try:
    decoder = tfc.create_range_decoder(
        tf.constant([_pad_for_decoding(section.data, values.size)]),
        entropy_model.cdf)
    encoder = tfc.create_range_encoder([1], entropy_model.cdf)
    for top in range(0, height, rows):
      count = min(rows, height - top)
      shape = [count, width, channels]
      if indexes is None:
        decoder, symbols = tfc.entropy_decode_channel(decoder, shape,
                                                      cdf_offset.dtype)
        encoder = tfc.entropy_encode_channel(encoder, symbols)
        symbols = symbols + cdf_offset
      else:
        rows_indexes = tf.constant(indexes[None, top:top + count], tf.int32)
        decoder, symbols = tfc.entropy_decode_index(
            decoder, rows_indexes, shape, cdf_offset.dtype)
        encoder = tfc.entropy_encode_index(encoder, rows_indexes, symbols)
        symbols = symbols + tf.gather(cdf_offset, rows_indexes)
      rows_values = tf.cast(symbols[0], entropy_model.bottleneck_dtype)
      values[top:top + count] = (rows_values if offset is None else
                                 rows_values + offset)
    recoded = tfc.entropy_encode_finalize(encoder).numpy()[0]
  except tf.errors.OpError as error:
    raise FormatError(f"section {index} is corrupted: the range decoder "
                      f"rejects it ({error.message.splitlines()[0]})"
                      ) from None
  if recoded != section.data:
    raise FormatError(f"section {index} is corrupted: its "
                      f"{len(section.data)} bytes are not a range coding of "
                      f"{'x'.join(map(str, section.shape))} latents")
  return values


def range_decode(entropy_model, data, shape, indexes=None):
  """`entropy_model.decompress` of one string (a scalar string tensor) into
  values [1, h, w, C] for `shape` [h, w, C], batched (indexes None) or
  indexed (`indexes`, int32 [h, w, C]), with the padding above and without
  tfc's sanity check: callers check that the values re-encode to `data`
  (`check_range_code`). In TensorFlow ops, for the SavedModel's one tile;
  `decode_section` is the same in slices."""
  count = tf.reduce_prod(tf.cast(shape, tf.int64))
  padded = tf.strings.join([
      data, tf.constant(bytes(_ZERO_PADDING_BYTES)),
      tf.strings.reduce_join(tf.fill([_ONE_BITS_BYTES_PER_VALUE * count],
                                     tf.constant(b"\xff")))])
  handle = tfc.create_range_decoder(padded[None], entropy_model.cdf)
  shape = tf.cast(shape, tf.int32)
  cdf_offset = entropy_model.cdf_offset
  if indexes is None:
    _, symbols = tfc.entropy_decode_channel(handle, shape, cdf_offset.dtype)
    symbols += cdf_offset
  else:
    _, symbols = tfc.entropy_decode_index(handle, indexes[None], shape,
                                          cdf_offset.dtype)
    symbols += tf.gather(cdf_offset, indexes[None])
  values = tf.cast(symbols, entropy_model.bottleneck_dtype)
  offset = getattr(entropy_model, "quantization_offset", None)
  return values if offset is None else values + offset


def check_range_code(entropy_model, values, data, indexes=None):
  """A bool tensor: is `data` exactly the range coding of `values` [1, h, w,
  C] (with `indexes` [h, w, C] for an indexed model)?"""
  if indexes is None:
    return tf.equal(entropy_model.compress(values)[0], data)
  return tf.equal(entropy_model.compress(values, indexes[None])[0], data)
