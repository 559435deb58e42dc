import numpy as np
import pytest
import tensorflow as tf

from balle.models import layers
from balle.models.bls2017 import AnalysisTransform
from balle.models.bls2017 import SynthesisTransform


@pytest.mark.parametrize("height,width", [(1, 1), (16, 16), (17, 33),
                                          (100, 37), (31, 64)])
def test_shapes_for_any_size(height, width):
  analysis = AnalysisTransform(8)
  synthesis = SynthesisTransform(8, 3)
  latents = analysis(tf.zeros([2, height, width, 3]))
  assert latents.shape == (2, -(-height // 16), -(-width // 16), 8)
  images = synthesis(latents)
  assert images.shape == (2, 16 * latents.shape[1], 16 * latents.shape[2], 3)


def test_stages_follow_the_paper():
  analysis = AnalysisTransform(8)
  analysis.build((None, None, None, 3))
  convs = analysis.layers[0::2]
  assert [(c.kernel_support, c.strides_down) for c in convs] == [
      ((9, 9), (4, 4)), ((5, 5), (2, 2)), ((5, 5), (2, 2))]
  synthesis = SynthesisTransform(8, 1)
  synthesis.build((None, None, None, 8))
  deconvs = synthesis.layers[0::2]
  assert [(d.kernel_support, d.strides_up, d.filters) for d in deconvs] == [
      ((5, 5), (2, 2), 8), ((5, 5), (2, 2), 8), ((9, 9), (4, 4), 1)]
  assert [l.inverse for l in synthesis.layers[1::2]] == [True, True]
  assert [l.inverse for l in analysis.layers[1::2]] == [False, False]
  assert not hasattr(analysis.layers[-1], "inverse")  # ends with a conv


def _gdn_reference(x, beta, gamma, form):
  """y_i = x_i / sqrt(beta_i + sum_j gamma_ji x_j^2), or the simplified form."""
  if form == "paper":
    return x / np.sqrt(beta + np.square(x) @ gamma)
  return x / (beta + np.abs(x) @ gamma)


@pytest.mark.parametrize("form", ["paper", "simplified"])
def test_gdn_computes_its_formula(form):
  layer = layers.generalized_divisive_normalization(form, False, "g")
  rng = np.random.default_rng(1)
  x = rng.normal(size=(4, 5, 6, 3)).astype(np.float32)
  gamma = rng.uniform(0.05, 0.5, (3, 3)).astype(np.float32)
  beta = rng.uniform(0.5, 2.0, 3).astype(np.float32)
  layer.gamma_parameter, layer.beta_parameter = gamma, beta
  expected = _gdn_reference(x.astype(np.float64), beta, gamma, form)
  np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4)
  inverse = layers.generalized_divisive_normalization(form, True, "ig")
  inverse.gamma_parameter, inverse.beta_parameter = gamma, beta
  norm = x.astype(np.float64) / expected
  np.testing.assert_allclose(inverse(x).numpy(), x * norm, rtol=1e-4)


def test_unknown_gdn_form_is_refused():
  with pytest.raises(ValueError, match="unknown GDN form"):
    layers.generalized_divisive_normalization("other", False, "g")


@pytest.mark.parametrize("shape", [(9, 9, 3, 4), (5, 5, 4, 4), (4, 6, 2, 3)])
def test_matmul_rdft_kernel_and_gradients_match_tfc(shape):
  import tensorflow_compression as tfc  # pylint: disable=import-outside-toplevel
  parameter = layers.MatmulRDFTParameter(tf.zeros(shape))
  rng = np.random.default_rng(0)
  parameter.real.assign(rng.normal(size=parameter.real.shape))
  parameter.imag.assign(rng.normal(size=parameter.imag.shape))
  weights = tf.constant(rng.normal(size=shape), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    ours = parameter()
    theirs = tfc.RDFTParameter.__call__(parameter)  # tfc's batched FFTs
    loss_ours = tf.reduce_sum(ours * weights)
    loss_theirs = tf.reduce_sum(theirs * weights)
  assert ours.shape == shape
  np.testing.assert_allclose(ours, theirs, atol=1e-5)
  variables = [parameter.real, parameter.imag]
  for mine, reference in zip(tape.gradient(loss_ours, variables),
                             tape.gradient(loss_theirs, variables)):
    np.testing.assert_allclose(mine, reference, atol=1e-4)


def test_convolutions_use_the_matmul_kernel():
  analysis = AnalysisTransform(8)
  analysis.build((None, None, None, 3))
  assert all(isinstance(conv.kernel_parameter, layers.MatmulRDFTParameter)
             for conv in analysis.layers[0::2])
  assert [v.name for v in analysis.layers[0].trainable_variables] == [
      "conv_0/bias:0", "conv_0/kernel_imag:0", "conv_0/kernel_real:0"]


@pytest.mark.parametrize("height,width", [(1, 1), (17, 33), (48, 32)])
def test_mixed_bfloat16_transforms_match_float32(height, width):
  """Same weights, bfloat16 arithmetic with VALID+crop transposed convs:
  same shapes, outputs within bfloat16 rounding of the float32 ones."""
  exact = (AnalysisTransform(8), SynthesisTransform(8, 3))
  mixed = (AnalysisTransform(8, precision="mixed_bfloat16"),
           SynthesisTransform(8, 3, precision="mixed_bfloat16"))
  x = tf.random.stateless_uniform([2, height, width, 3], (3, 4))
  for f32, bf16 in zip(exact, mixed):
    f32(x if f32 is exact[0] else tf.zeros([1, 2, 2, 8]))
    bf16(x if bf16 is mixed[0] else tf.zeros([1, 2, 2, 8]))
    bf16.set_weights(f32.get_weights())
    assert all(v.dtype == tf.float32 for v in bf16.variables)
  latents = exact[0](x)
  mixed_latents = tf.cast(mixed[0](x), tf.float32)
  assert mixed[0].layers[0].compute_dtype == "bfloat16"
  assert not mixed[1].layers[0].use_explicit
  np.testing.assert_allclose(mixed_latents, latents, rtol=0.05,
                             atol=0.02 * float(tf.reduce_max(tf.abs(latents))))
  images = exact[1](latents)
  mixed_images = tf.cast(mixed[1](latents), tf.float32)
  assert mixed_images.shape == images.shape
  np.testing.assert_allclose(mixed_images, images, rtol=0.05,
                             atol=0.02 * float(tf.reduce_max(tf.abs(images))))


def test_unknown_precision_is_refused():
  with pytest.raises(ValueError, match="unknown precision"):
    AnalysisTransform(8, precision="float16")


@pytest.mark.parametrize("kernel,stride,corr,channels,height,width", [
    (9, 4, True, (3, 8), 32, 35),    # g_a's first stage, width not / 4
    (9, 4, False, (8, 3), 8, 11),    # g_s's last stage
    (5, 2, True, (4, 4), 9, 16),
    (5, 2, False, (4, 4), 5, 7),
    (7, 3, False, (3, 4), 4, 6),
    (3, 2, True, (2, 5), 7, 3),
])
def test_phase_decomposition_matches_tfc(kernel, stride, corr, channels,
                                         height, width):
  """Same variables, same outputs and gradients as tfc's strided layer."""
  import tensorflow_compression as tfc  # pylint: disable=import-outside-toplevel
  strides = dict(strides_down=stride) if corr else dict(strides_up=stride)
  args = (channels[1], (kernel, kernel))
  kwargs = dict(corr=corr, padding="same_zeros", use_bias=True, **strides)
  reference = tfc.SignalConv2D(*args, **kwargs)
  phase = layers.SignalConv2D(*args, phase_decomposition=True, **kwargs)
  rng = np.random.default_rng(kernel + stride)
  x = tf.constant(rng.normal(size=(2, height, width, channels[0])),
                  tf.float32)
  reference(x), phase(x)
  for ours, theirs in zip(phase.weights, reference.weights):
    theirs.assign(theirs + rng.normal(size=theirs.shape) * 0.3)
    ours.assign(theirs)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    expected, actual = reference(x), phase(x)
    weights = tf.constant(rng.normal(size=expected.shape), tf.float32)
    loss_expected = tf.reduce_sum(expected * weights)
    loss_actual = tf.reduce_sum(actual * weights)
  assert actual.shape == expected.shape
  scale = float(tf.reduce_max(tf.abs(expected)))
  np.testing.assert_allclose(actual, expected, atol=1e-5 * scale)
  for ours, theirs in zip(tape.gradient(loss_actual, [x] + phase.weights),
                          tape.gradient(loss_expected,
                                        [x] + reference.weights)):
    np.testing.assert_allclose(ours, theirs, atol=1e-5 * float(
        tf.reduce_max(tf.abs(theirs))))


def test_image_side_stages_use_the_phase_form():
  analysis = AnalysisTransform(8)
  synthesis = SynthesisTransform(8, 3)
  assert [c.phase_decomposition for c in analysis.layers[0::2]] == [
      True, False, False]
  assert [c.phase_decomposition for c in synthesis.layers[0::2]] == [
      False, False, True]


def test_phase_decomposition_refuses_unsupported_layers():
  with pytest.raises(ValueError, match="phase_decomposition"):
    layers.SignalConv2D(4, (4, 4), corr=True, strides_down=2,
                        padding="same_zeros", phase_decomposition=True)
  with pytest.raises(ValueError, match="phase_decomposition"):
    layers.SignalConv2D(4, (5, 5), corr=True, padding="same_zeros",
                        phase_decomposition=True)


@pytest.mark.parametrize("form", ["paper", "simplified"])
def test_gdn_traces_to_plain_ops(form):
  """No conditionals and no generic Pow in the graph (tfc.GDN.call traces to
  one or the other, depending on how the process was started)."""
  layer = layers.generalized_divisive_normalization(form, False, "g")
  x = tf.zeros((1, 4, 4, 8))
  layer(x)
  graph = tf.function(layer).get_concrete_function(x).graph
  types = {op.type for op in graph.get_operations()}
  assert not types & {"Pow", "If", "StatelessIf"}, types
  assert ("Square" if form == "paper" else "Abs") in types


def test_gdn_gradients_match_tfc():
  import tensorflow_compression as tfc  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(2)
  x = tf.constant(rng.normal(size=(2, 5, 5, 6)), tf.float32)
  for inverse in (False, True):
    ours = layers.generalized_divisive_normalization("paper", inverse, "g")
    theirs = tfc.GDN(inverse=inverse, alpha_parameter=2, epsilon_parameter=.5)
    ours(x), theirs(x)
    for a, b in zip(ours.weights, theirs.weights):
      b.assign(b + rng.uniform(0, 0.1, b.shape))
      a.assign(b)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(x)
      y_ours, y_theirs = ours(x), theirs(x)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-6)
    for g_ours, g_theirs in zip(
        tape.gradient(y_ours, [x] + ours.trainable_weights),
        tape.gradient(y_theirs, [x] + theirs.trainable_weights)):
      np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-5)
