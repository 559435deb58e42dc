import numpy as np
import pytest
import tensorflow as tf

from balle.models import integer_network
from balle.models.integer_network import IntegerConvStack, IntegerLayer
from balle.models.layers import ConvStack, Stage


def _hyper_synthesis(seed=0, channels=6, outputs=5):
  """A float h_s shaped like bmshj2018's, random weights and biases."""
  tf.random.set_seed(seed)
  stack = ConvStack([Stage(channels, 5, 2, "relu"),
                     Stage(channels, 5, 2, "relu"),
                     Stage(outputs, 3, 1)], upsample=True)
  stack.build((None, None, None, channels))
  rng = np.random.default_rng(seed)
  for layer in stack.layers:
    layer.bias_parameter.assign(rng.normal(0, 0.3, layer.bias.shape))
  return stack


def _reference_transposed_conv(inputs, kernel, stride):
  """tfc's transposed "same_zeros" convolution by its definition, in int64:
  y[u] = sum_m x[m] w[u - stride m + k // 2] over both axes."""
  batch, height, width, _ = inputs.shape
  size = kernel.shape[0]
  center = size // 2
  outputs = np.zeros((batch, height * stride, width * stride,
                      kernel.shape[3]), np.int64)
  for ty in range(size):
    for tx in range(size):
      contribution = np.einsum("bhwi,io->bhwo", inputs, kernel[ty, tx])
      for m in range(height):
        u = stride * m + ty - center
        if not 0 <= u < height * stride:
          continue
        for n in range(width):
          v = stride * n + tx - center
          if 0 <= v < width * stride:
            outputs[:, u, v] += contribution[:, m, n]
  return outputs


def _reference_correlation(inputs, kernel):
  """A stride-1 "same_zeros" correlation by its definition, in int64:
  y[u] = sum_t x[u + t - k // 2] w[t] over both axes."""
  size = kernel.shape[0]
  center = size // 2
  padded = np.pad(inputs, [(0, 0), (center, center), (center, center),
                           (0, 0)])
  height, width = inputs.shape[1:3]
  return sum(np.einsum("bhwi,io->bhwo",
                       padded[:, ty:ty + height, tx:tx + width],
                       kernel[ty, tx])
             for ty in range(size) for tx in range(size))


def _reference_stack(stack, inputs):
  values = np.clip(inputs.astype(np.int64), -integer_network.INPUT_LIMIT,
                   integer_network.INPUT_LIMIT)
  for layer in stack.layers:
    if layer.correlation:
      sums = _reference_correlation(values, layer.kernel) + layer.bias
    else:
      sums = _reference_transposed_conv(values, layer.kernel,
                                        layer.upsampling) + layer.bias
    if layer.shift is None:
      return sums
    half = np.where(layer.shift > 0, 1 << np.maximum(layer.shift - 1, 0), 0)
    values = np.minimum((np.maximum(sums, 0) + half) >> layer.shift,
                        layer.activation_max)
  raise AssertionError


def test_stack_computes_the_integers_of_its_definition():
  float_stack = _hyper_synthesis()
  stack, _ = integer_network.quantize_conv_stack(
      float_stack.layers, np.tile([-4, 4], (6, 1)))
  rng = np.random.default_rng(1)
  inputs = rng.integers(-6, 7, (2, 3, 4, 6))
  inputs[0, 0, 0, 0] = 40000  # clipped to INPUT_LIMIT
  outputs = stack(tf.constant(inputs, tf.float32)).numpy()
  assert outputs.dtype == np.int64 and outputs.shape == (2, 12, 16, 5)
  np.testing.assert_array_equal(outputs, _reference_stack(stack, inputs))


def test_stride_one_correlations_are_exact_too():
  """The layers of context and entropy-parameter networks (later families):
  a masked-like 5x5 correlation, then a 1x1 one."""
  tf.random.set_seed(4)
  float_stack = ConvStack([Stage(7, 5, 1, "relu"), Stage(3, 1, 1)],
                          upsample=False)
  float_stack.build((None, None, None, 4))
  stack, exponents = integer_network.quantize_conv_stack(
      float_stack.layers, np.tile([-5, 5], (4, 1)))
  inputs = np.random.default_rng(5).integers(-5, 6, (1, 6, 7, 4))
  outputs = stack(tf.constant(inputs, tf.float32)).numpy()
  np.testing.assert_array_equal(outputs, _reference_stack(stack, inputs))
  expected = float_stack(tf.constant(inputs, tf.float32)).numpy()
  np.testing.assert_allclose(outputs / 2.0 ** exponents, expected,
                             atol=1e-3 * np.max(np.abs(expected)))


def test_quantized_stack_follows_the_float_one():
  float_stack = _hyper_synthesis(seed=2)
  stack, exponents = integer_network.quantize_conv_stack(
      float_stack.layers, np.tile([-3, 3], (6, 1)))
  inputs = np.random.default_rng(3).integers(-3, 4, (1, 4, 5, 6))
  expected = float_stack(tf.constant(inputs, tf.float32)).numpy()
  actual = stack(tf.constant(inputs, tf.float32)).numpy() / 2.0 ** exponents
  scale = np.max(np.abs(expected))
  assert np.max(np.abs(actual - expected)) < 1e-3 * scale
  assert np.max(np.abs(actual - expected)) > 0  # it is a quantization


def test_layers_that_could_leave_float64s_integers_are_rejected():
  kernel = np.full((3, 3, 64, 2), integer_network.WEIGHT_LIMIT, np.int64)
  bias = np.zeros(2, np.int64)
  with pytest.raises(ValueError, match="2\\^53"):
    IntegerConvStack([IntegerLayer(kernel, bias, 1, np.zeros(2, np.int64),
                                   2 ** 40),
                      IntegerLayer(kernel[:, :, :2], bias, 1)])
  with pytest.raises(ValueError, match="2\\^15"):
    IntegerConvStack([IntegerLayer(kernel[:, :, :2] * 2, bias, 1)])
  with pytest.raises(ValueError, match="shifts"):
    IntegerConvStack([IntegerLayer(kernel[:, :, :2], bias, 1)] * 2)


def test_arrays_round_trip():
  stack, _ = integer_network.quantize_conv_stack(
      _hyper_synthesis().layers, np.tile([-2, 2], (6, 1)))
  arrays = stack.arrays("h_s")
  copy = IntegerConvStack.from_arrays(
      {name: np.asarray(a, np.int16) if np.ndim(a) == 4 else a
       for name, a in arrays.items()}, "h_s")
  inputs = tf.constant(np.arange(-12, 12).reshape(1, 2, 2, 6), tf.float32)
  np.testing.assert_array_equal(copy(inputs).numpy(), stack(inputs).numpy())
  with pytest.raises(ValueError, match="no integer layers"):
    IntegerConvStack.from_arrays(arrays, "g_s")


def test_rounding_shift_rounds_halves_up_and_clips():
  sums = tf.constant([[-5, 0, 1, 2, 3, 5, 6, 100]], tf.int64)
  shift = np.array([1] * 8)
  values = integer_network._rounding_shift(  # pylint: disable=protected-access
      tf.transpose(sums), shift[:1], 20).numpy()[:, 0]
  np.testing.assert_array_equal(values, [0, 0, 1, 1, 2, 3, 3, 20])


def test_threshold_index_counts_the_thresholds_reached():
  thresholds = integer_network.index_thresholds([-1.0, 0.25, 2.0], [0, 3])
  np.testing.assert_array_equal(thresholds, [[-1, 1, 2], [-8, 2, 16]])
  values = tf.constant([[[[-2, -8], [-1, 1], [1, 2], [2, 16], [9, 15]]]],
                       tf.int64)
  indexes = integer_network.threshold_index(values, thresholds).numpy()
  np.testing.assert_array_equal(indexes[0, 0],
                                [[0, 1], [1, 1], [2, 2], [3, 3], [3, 2]])
