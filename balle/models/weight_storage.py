"""How a model's weights are stored in weights.npz (`write`, `read`).

Each array is stored in the smallest form that holds its values exactly:
- convolution kernels (`is_int8_kernel`) whose every 2-D filter is int8
  levels times one float16 scale (`compact_copy` of
  balle.models.compression_model rounds them so): the int8 levels under the
  variable's name and the scales, float16 [in, out, 1, 1], under name +
  SCALE_SUFFIX. The kernels are tfc's RDFT parameters
  [in, out, h, w // 2 + 1] (names ending in KERNEL_SUFFIXES); a filter is
  the last two axes, one input channel's taps of one output.
- float16 for floats that are float16 values, int16 for integer tables
  (the CDFs);
- anything else as it is.

Reading multiplies levels by scales in float32, which is exact (an 8-bit
integer times an 11-bit mantissa fits float32's 24 bits), so a loaded model
has the very weights, and the model id, of the saved one. The archive is
byte-identical for identical weights, so git stores a model once.
"""

import zipfile

import numpy as np

KERNEL_SUFFIXES = ("kernel_real", "kernel_imag")
SCALE_SUFFIX = "@scale"
INT8_LEVELS = 127  # levels -127..127, symmetric around 0
PIXEL_CHANNELS = 4  # RGB, gray (and room for an alpha channel)


def is_int8_kernel(name, shape):
  """Whether variable `name` of `shape` is a kernel that `compact_copy`
  rounds to int8: every convolution but those that touch the pixels (at
  most PIXEL_CHANNELS inputs or outputs), which hold few weights but most of
  the error int8 causes (bls2017 at lambda 0.025: 0.05 dB for its first
  layer alone, benchmarks/README.md, "Weight storage")."""
  return name.endswith(KERNEL_SUFFIXES) and min(shape[:2]) > PIXEL_CHANNELS


def _filter_scales(kernel):
  """float32 [..., 1, 1]: max |w| of each filter / INT8_LEVELS, rounded
  down to float16 (1 for an all-zero filter).

  Rounded down, so that each filter's peak is level +-127 exactly (clipped
  from up to 127.1, more for scales below float16's normal range), and the
  scales computed again from rounded weights are the same: that is how
  `_int8_factors` recognizes them. Rounded to nearest, a subnormal scale
  could put a peak at level 126."""
  peak = np.max(np.abs(kernel), axis=(-2, -1), keepdims=True)
  exact = np.where(peak > 0, peak / INT8_LEVELS, 1).astype(np.float32)
  scales = exact.astype(np.float16)
  scales = np.where(scales.astype(np.float32) > exact,
                    np.nextafter(scales, np.float16(0)), scales)
  smallest = np.float16(2.0 ** -24)  # a peak too small for float16's range
  return np.maximum(scales, smallest).astype(np.float32)


def round_to_int8_filters(kernel):
  """`kernel` (float32) rounded to int8 levels times a float16 scale per
  filter: relative error ~0.5 % on trained kernels, against ~0.03 % for
  float16 (`benchmarks/weight_storage.py` measures what it costs)."""
  kernel = np.asarray(kernel, np.float32)
  scales = _filter_scales(kernel)
  levels = np.clip(np.round(kernel / scales), -INT8_LEVELS, INT8_LEVELS)
  return levels * scales + 0.0  # -0.0 -> 0.0, as int8 levels read back


def _int8_factors(kernel):
  """(int8 levels, float16 scales) whose product is exactly `kernel`, or
  None. Exact products come from `round_to_int8_filters`: their peaks are
  +-127 levels, so the scales computed again are the same float16 values."""
  if kernel.dtype != np.float32 or kernel.ndim < 2:
    return None
  scales = _filter_scales(kernel)
  levels = np.round(kernel / scales)
  if (np.max(np.abs(levels), initial=0) > INT8_LEVELS
      or not np.array_equal(levels * scales, kernel)
      or np.any(np.signbit(kernel[kernel == 0]))):  # int8 has no -0.0
    return None
  return levels.astype(np.int8), scales.astype(np.float16)


def _smallest_exact(array):
  """`array` as float16 or int16 when that holds its values exactly."""
  for dtype in (np.float16, np.int16):
    if np.can_cast(dtype, array.dtype):  # float32 -> float16, int32 -> int16
      with np.errstate(over="ignore"):
        narrow = array.astype(dtype)
      if np.array_equal(narrow.astype(array.dtype), array):
        return narrow
  return array


def encode(weights):
  """{stored name: array} of {variable name: numpy array}."""
  stored = {}
  for name, array in weights.items():
    factors = (_int8_factors(array) if is_int8_kernel(name, array.shape)
               else None)
    if factors is None:
      stored[name] = _smallest_exact(array)
    else:
      stored[name], stored[name + SCALE_SUFFIX] = factors
  return stored


def decode(stored):
  """{variable name: array} of `encode`'s {stored name: array} (or of an
  open .npz archive); int8 kernels come back as float32."""
  names = [name for name in stored if not name.endswith(SCALE_SUFFIX)]
  weights = {}
  for name in names:
    array = stored[name]
    if name + SCALE_SUFFIX in stored:
      array = array.astype(np.float32) * stored[name + SCALE_SUFFIX].astype(
          np.float32)
    weights[name] = array
  orphans = set(stored) - set(names) - {n + SCALE_SUFFIX for n in names}
  if orphans:
    raise ValueError(f"scales without weights: {sorted(orphans)[:3]}")
  return weights


def write(file, weights):
  """Writes `weights` ({variable name: numpy array}) to the open binary
  `file` as an .npz archive that np.load reads, byte-identical for identical
  weights (np.savez stamps the current time into the archive, so every
  save of the same model would differ, and git would store each copy)."""
  stored = encode(weights)
  with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
    for name in sorted(stored):
      member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
      with archive.open(member, "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.asarray(stored[name]),
                                  allow_pickle=False)


def read(path):
  """{variable name: numpy array} of the weights.npz at `path`."""
  with np.load(path, allow_pickle=False) as archive:
    return decode({name: archive[name] for name in archive.files})
