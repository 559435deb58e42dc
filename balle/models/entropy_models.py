"""The entropy-model wiring the families share: frozen integer CDF tables,
the range of values they code, and the Gaussian scale table.

- `frozen_batched_entropy_model`: a factorized prior's tables, built once
  (saved with the model: encoder and decoder never rebuild them).
- `coded_ranges`: the values each channel's table codes without escape,
  the typical range an exact network reading them is scaled for
  (balle.models.integer_network).
- `ScaleTable`: the log-spaced scales of the scale hyperprior's (and its
  successors') conditional Gaussians, and the index rounding boundaries
  that exact indexes compare against.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc


def frozen_batched_entropy_model(prior, coding_rank=3):
  """tfc.ContinuousBatchedEntropyModel(prior, coding_rank, compression=True)
  with its range coding tables computed in a tf.function.

  tfc finds the prior's tails (and quantization offsets) by an Adam
  iteration of hundreds to thousands of steps: seconds when run op by op,
  as it is in eager mode, a fraction of that traced. The tables are made by
  the same ops; the model holds them but not the prior, which compress and
  decompress do not use (as a model loaded from its files)."""

  @tf.function
  def tables():
    model = tfc.ContinuousBatchedEntropyModel(
        prior, coding_rank=coding_rank, compression=True, stateless=True)
    return model.cdf, model.cdf_offset, model.quantization_offset

  # One trace per model by design: no "frequent retracing" warning.
  tables._omit_frequent_tracing_warning = True  # pylint: disable=protected-access
  cdf, cdf_offset, offset = tables()
  if not np.any(offset.numpy()):
    offset = None  # what tfc keeps for all-zero offsets in eager mode
  return tfc.ContinuousBatchedEntropyModel(
      coding_rank=coding_rank, compression=True, prior_shape=prior.batch_shape,
      cdf=cdf, cdf_offset=cdf_offset, quantization_offset=offset)


def coded_ranges(entropy_model):
  """[C, 2]: the smallest and largest value of each channel that a frozen
  tfc.ContinuousBatchedEntropyModel codes without escape (tfc's flat table:
  per channel -precision, then pmf_length + 2 CDF values)."""
  cdf = entropy_model.cdf.numpy()
  offsets = entropy_model.cdf_offset.numpy()
  starts = np.flatnonzero(cdf < 0)
  lengths = np.diff(np.append(starts, len(cdf))) - 3
  if len(starts) != len(offsets) or np.any(lengths < 1):
    raise ValueError("unexpected layout of a CDF table")
  return np.stack([offsets, offsets + lengths - 1], axis=1)


# The scale table of y's Gaussians: NUM_SCALES scales from SCALE_MIN to
# SCALE_MAX, equally spaced in log scale.
SCALE_MIN = 0.11
SCALE_MAX = 256.
NUM_SCALES = 64


class ScaleTable:
  """The log-spaced scales sigma_i = exp(log_min + i * step), i < count."""

  def __init__(self, scale_min, scale_max, count):
    self.scale_min, self.scale_max, self.count = scale_min, scale_max, count
    self.log_min = math.log(scale_min)
    self.step = (math.log(scale_max) - self.log_min) / (count - 1)

  def scale(self, index):
    """sigma of (float) table indexes."""
    return tf.math.exp(self.log_min + self.step * index)

  def boundaries(self):
    """The log sigma at which the rounded index steps from k - 1 to k,
    k = 1 .. count - 1."""
    return self.log_min + (np.arange(1, self.count) - 0.5) * self.step

  def index(self, log_scale, rounded):
    """The table index of sigma = exp(log_scale): continuous (tfc's entropy
    model clips it to [0, count - 1]), or the nearest entry as int32."""
    index = (log_scale - self.log_min) / self.step
    if not rounded:
      return index
    return tf.cast(tf.clip_by_value(tf.round(index), 0, self.count - 1),
                   tf.int32)

  def config(self):
    return dict(scale_min=self.scale_min, scale_max=self.scale_max,
                num_scales=self.count)
