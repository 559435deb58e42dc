"""Exact integer networks: convolution stacks that compute the same integers
on every machine, for whatever in a decoder chooses a CDF or a symbol.

A decoder that derives a probability table from a network's floating-point
output (the scale hyperprior's h_s -> table index) decodes garbage when the
decoding machine's kernels sum in another order and the output crosses a
rounding boundary. Ballé, Johnston & Minnen, "Integer Networks for Data
Compression with Latent-Variable Models" (ICLR 2019), remove the floating
point: integer weights and activations, integer accumulation, a rounding
division and a clipped nonlinearity. This module does the same at high
precision, as a post-training conversion of a trained `ConvStack`:

    layer l, output channel c:  W = round(w * 2^p_c)       |W| <= 2^15 - 1
                                B = round(b * 2^(e_l + p_c))
    acc = conv(W, a) + B                              (integers, exact)
    hidden layers:  a' = clip(round(acc / 2^s_c), 0, A_max),
                    s_c = e_l + p_c - e_(l+1)            (ReLU, int64 shift)
    last layer:     acc itself, the real output times 2^(e_L + p_c)

a is the input in units of 2^-e_l (e_0 = 0: the stack's input is integers,
clipped to +-INPUT_LIMIT). The convolutions run in float64, where every
integer below 2^53 is exact: construction checks that
(kernel taps x input channels) x max|W| x max|a| + max|B| < 2^53, so every
product and every partial sum of every output is an exact integer, and the
sum is the same in any order, with or without fused multiply-adds, on any
kernel, instruction set, thread count, tile or batch shape. Shifts, clips
and comparisons run in int64. The result depends on the stored integers
alone (they are saved with the model, never recomputed by a decoder).

With 16-bit weights and ~25-bit activations, the stack's output equals the
float network's to ~1e-4 relative, so converting a trained model needs no
fine-tune (the rate cost is measured by benchmarks/portability.py and
experiments.evaluate). Activation scales e_l come from interval bounds of
each layer's output over the input's typical range (`input_ranges`); an
input beyond it can only saturate A_max, which changes a rate, never the
exactness.

`threshold_index` quantizes an exact output to a table index with integer
thresholds (a table's rounding boundaries, scaled once at conversion).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from balle.models.layers import _phase_taps  # pylint: disable=protected-access

WEIGHT_LIMIT = 2 ** 15 - 1
INPUT_LIMIT = 2 ** 15  # |input| is clipped to this
EXACT_LIMIT = 2 ** 53  # float64 holds every integer of smaller magnitude
# Share of EXACT_LIMIT a layer's sum of products may reach (the bias and
# rounding get the rest).
_PRODUCTS_SHARE = 2 ** 52
# Headroom of A_max over the interval bound of a layer's typical output.
_HEADROOM = 4


@dataclasses.dataclass
class IntegerLayer:
  """One exact layer: a "same_zeros" convolution of tfc's SignalConv2D
  with kernel [k, k, C_in, C_out] (k odd), transposed with upsampling s
  (corr=False), or a correlation with stride 1 (`correlation`: the context
  and entropy-parameter layers of later families); bias [C_out], and for a
  hidden layer the shifts [C_out] and A_max (shift None: the last, linear
  layer). Integers in int64 arrays."""
  kernel: np.ndarray
  bias: np.ndarray
  upsampling: int
  shift: np.ndarray = None
  activation_max: int = 0
  correlation: bool = False

  def phase_kernel(self):
    """The kernel of the stride-1 "SAME" convolution that runs: the kernel
    itself for a correlation, else `upsampling_kernel`."""
    if self.correlation:
      return self.kernel
    return upsampling_kernel(self.kernel, self.upsampling)

  def max_sum(self, phase_kernel, input_max):
    """The largest |acc| this layer can compute from inputs <= input_max,
    its `phase_kernel` given."""
    taps = np.count_nonzero(phase_kernel, axis=(0, 1, 2)).max()
    return (int(taps) * int(np.abs(self.kernel).max()) * int(input_max) +
            int(np.abs(self.bias).max()))


class IntegerConvStack:
  """Exact integer layers applied in order (see the module docstring)."""

  def __init__(self, layers):
    self.layers = list(layers)
    phase_kernels = [layer.phase_kernel() for layer in self.layers]
    input_max = INPUT_LIMIT
    for index, (layer, kernel) in enumerate(zip(self.layers, phase_kernels)):
      if layer.max_sum(kernel, input_max) >= EXACT_LIMIT:
        raise ValueError(f"integer layer {index} can reach 2^53: its sums "
                         "would not be exact in float64")
      if np.abs(layer.kernel).max() > WEIGHT_LIMIT:
        raise ValueError(f"integer layer {index} has weights above 2^15")
      last = index == len(self.layers) - 1
      if (layer.shift is None) != last:
        raise ValueError("every layer but the last needs shifts")
      if not last:
        if np.any(layer.shift < 0) or np.any(layer.shift > 62):
          raise ValueError(f"integer layer {index} has shifts outside 0..62")
        input_max = layer.activation_max
    self._kernels = [tf.constant(kernel, tf.float64)
                     for kernel in phase_kernels]

  def __call__(self, inputs):
    """Integer-valued inputs [B, h, w, C] (any float or int dtype) -> the
    last layer's int64 outputs [B, h * S, w * S, C'], S the product of the
    layers' upsampling."""
    values = tf.clip_by_value(tf.cast(inputs, tf.float64),
                              -INPUT_LIMIT, INPUT_LIMIT)
    for layer, kernel in zip(self.layers, self._kernels):
      values = tf.nn.conv2d(values, kernel, 1, "SAME")
      if layer.upsampling > 1:
        values = tf.nn.depth_to_space(values, layer.upsampling)
      sums = tf.cast(values, tf.int64) + layer.bias
      if layer.shift is None:
        return sums
      values = tf.cast(_rounding_shift(sums, layer.shift,
                                       layer.activation_max), tf.float64)
    raise AssertionError("unreachable")

  def arrays(self, prefix):
    """{name: int64 array} of every layer, for saving."""
    arrays = {}
    for index, layer in enumerate(self.layers):
      name = f"{prefix}/layer_{index}"
      arrays[f"{name}/kernel"] = layer.kernel
      arrays[f"{name}/bias"] = layer.bias
      arrays[f"{name}/upsampling"] = np.int64(layer.upsampling)
      if layer.correlation:
        arrays[f"{name}/correlation"] = np.int64(1)
      if layer.shift is not None:
        arrays[f"{name}/shift"] = layer.shift
        arrays[f"{name}/activation_max"] = np.int64(layer.activation_max)
    return arrays

  @classmethod
  def from_arrays(cls, arrays, prefix):
    """The stack saved by `arrays(prefix)` (checked as it is built)."""
    layers = []
    while f"{prefix}/layer_{len(layers)}/kernel" in arrays:
      name = f"{prefix}/layer_{len(layers)}"
      shift = arrays.get(f"{name}/shift")
      layers.append(IntegerLayer(
          kernel=np.asarray(arrays[f"{name}/kernel"], np.int64),
          bias=np.asarray(arrays[f"{name}/bias"], np.int64),
          upsampling=int(arrays[f"{name}/upsampling"]),
          shift=None if shift is None else np.asarray(shift, np.int64),
          activation_max=int(arrays.get(f"{name}/activation_max", 0)),
          correlation=bool(arrays.get(f"{name}/correlation", 0))))
    if not layers:
      raise ValueError(f"no integer layers named {prefix}/...")
    return cls(layers)


def _rounding_shift(sums, shift, activation_max):
  """clip(round(max(sums, 0) / 2^shift), 0, activation_max), per channel,
  in int64 (halves round up)."""
  shift = tf.constant(shift, tf.int64)
  half = tf.bitwise.right_shift(tf.bitwise.left_shift(
      tf.ones_like(shift), shift), 1)
  values = tf.bitwise.right_shift(tf.maximum(sums, 0) + half, shift)
  return tf.minimum(values, activation_max)


def upsampling_kernel(kernel, stride):
  """A transposed "same_zeros" convolution kernel [k, k, C_in, C_out] of
  tfc.SignalConv2D (corr=False, strides_up=stride) as the kernel
  [t, t, C_in, s*s*C_out] of one stride-1 "SAME" convolution followed by
  depth_to_space(s): output u = s*m + r reads inputs m + q through tap
  r + k//2 - s*q (balle.models.layers._phase_taps). Exact: it only moves
  values. Works for stride 1 too (the spatially flipped kernel)."""
  size = kernel.shape[0]
  taps, index = _phase_taps(size, stride, upsample=True)
  padded = np.pad(kernel, [(0, 1), (0, 1), (0, 0), (0, 0)])
  gathered = padded[index.reshape(-1)][:, index.reshape(-1)]
  width = 2 * taps + 1
  c_in, c_out = kernel.shape[2], kernel.shape[3]
  gathered = gathered.reshape(width, stride, width, stride, c_in, c_out)
  gathered = gathered.transpose(0, 2, 4, 1, 3, 5)
  return gathered.reshape(width, width, c_in, stride * stride * c_out)


def _power_of_two_floor(value):
  return int(np.floor(np.log2(value)))


def quantize_conv_stack(layers, input_ranges):
  """(IntegerConvStack, output exponents f [C_out]) of trained "same_zeros"
  convolution layers (tfc.SignalConv2D: transposed, or correlations of
  stride 1; ReLU after each but the last, which is linear): the stack's
  output is the float stack's times 2^f_c, per channel.

  `input_ranges` [C_in, 2]: the typical range of each input channel (the
  scales of the activations are chosen so that outputs of inputs in it use
  ~1/_HEADROOM of A_max; inputs outside saturate, still exactly)."""
  lower = np.asarray(input_ranges, np.float64)[:, 0]
  upper = np.asarray(input_ranges, np.float64)[:, 1]
  exponent = 0  # of the current input
  integer_layers = []
  for index, layer in enumerate(layers):
    last = index == len(layers) - 1
    if (layer.padding != "same_zeros" or layer.kernel_support[0] % 2 == 0 or
        (layer.corr and layer.strides_down != (1, 1))):
      raise ValueError(f"layer {layer.name}: only odd same_zeros transposed "
                       "convolutions or stride-1 correlations are supported")
    linear = layer.activation in (None, tf.keras.activations.linear)
    if layer.activation is not tf.nn.relu and not (last and linear):
      raise ValueError(f"layer {layer.name}: expected ReLU after every "
                       "layer but the last")
    stride = 1 if layer.corr else layer.strides_up[0]
    shape = dict(upsampling=stride, correlation=bool(layer.corr))
    kernel = layer.kernel.numpy().astype(np.float64)
    bias = layer.bias.numpy().astype(np.float64)
    peak = np.max(np.abs(kernel), axis=(0, 1, 2))
    weight_exponents = np.array(
        [_power_of_two_floor(WEIGHT_LIMIT / p) if p > 0 else 0 for p in peak])
    levels = np.round(kernel * 2.0 ** weight_exponents).astype(np.int64)
    biases = np.round(bias * 2.0 ** (exponent + weight_exponents)).astype(
        np.int64)
    # Interval bound of this layer's real output over the input ranges.
    positive, negative = np.maximum(kernel, 0), np.minimum(kernel, 0)
    high = (np.einsum("hwio,i->o", positive, upper) +
            np.einsum("hwio,i->o", negative, lower) + bias)
    if last:
      integer_layers.append(IntegerLayer(levels, biases, **shape))
      return (IntegerConvStack(integer_layers),
              exponent + weight_exponents)
    # ReLU outputs lie in [0, max(high, 0)]; the next layer's sums must
    # stay below _PRODUCTS_SHARE.
    next_kernel = layers[index + 1].kernel
    next_taps = int(np.prod(next_kernel.shape[:3]))
    activation_max = 2 ** _power_of_two_floor(
        _PRODUCTS_SHARE / (next_taps * WEIGHT_LIMIT))
    bound = max(float(np.max(high)), 1e-6)
    next_exponent = min(
        _power_of_two_floor(activation_max / (_HEADROOM * bound)),
        exponent + int(np.min(weight_exponents)))  # shifts >= 0
    shifts = exponent + weight_exponents - next_exponent
    integer_layers.append(IntegerLayer(levels, biases, shift=shifts,
                                       activation_max=activation_max,
                                       **shape))
    exponent = next_exponent
    lower = np.zeros_like(high)
    upper = np.maximum(high, 0)
  raise ValueError("no layers")


def index_thresholds(boundaries, exponents):
  """int64 thresholds [C, K] of a table index over an exact output at
  scale 2^f_c: index = #{k: output >= T[c, k]} = the number of real
  `boundaries` (increasing, [K]) at or below output / 2^f_c."""
  boundaries = np.asarray(boundaries, np.float64)
  scales = 2.0 ** np.asarray(exponents, np.float64)
  return np.ceil(scales[:, None] * boundaries[None, :]).astype(np.int64)


def threshold_index(values, thresholds):
  """int32 indexes [..., C] = #{k: values[..., c] >= thresholds[c, k]} of
  int64 `values` [..., C], in integer comparisons."""
  thresholds = tf.constant(thresholds, tf.int64)
  shape = tf.shape(values)
  channels = thresholds.shape[0]
  columns = tf.transpose(tf.reshape(values, (-1, channels)))
  indexes = tf.searchsorted(thresholds, columns, side="right",
                            out_type=tf.int32)
  return tf.reshape(tf.transpose(indexes), shape)
