"""The layers every family's transforms are built of: GDN (`GDN`,
`generalized_divisive_normalization`), tfc's SignalConv2D with kernels in
the frequency domain (`SignalConv2D`, `MatmulRDFTParameter`), and `ConvStack`,
a chain of convolutions made from a list of `Stage`s (balle.models.bls2017
and balle.models.bmshj2018 declare their transforms as such lists).

Convolutions are tfc's SignalConv2D with kernels parameterized in the
frequency domain (RDFT), as in tensorflow-compression's reference models.
With plain Keras convolutions training reached 7 dB after 300 steps; with
RDFT kernels, 25 dB. The inverse RDFT is done as one matrix product
(`MatmulRDFTParameter`), not by tfc's batched tiny FFTs, which cost more than
the convolutions themselves on CPU.

Training may run the transforms in mixed bfloat16 (`precision=
"mixed_bfloat16"`: float32 variables, bfloat16 arithmetic; 1.5-1.6x faster
steps on AVX-512-BF16 CPUs, benchmarks/README.md). The transposed convolutions
then use VALID padding and cropping (tfc `use_explicit=False`): with EXPLICIT
padding TensorFlow has no fast bfloat16 kernel for them (~20x slower). Coding
always runs in float32.

Padding is zero "same" padding: a stack of strides s gives ceil(H/s) x
ceil(W/s) outputs, and its transpose s*ceil(H/s) x s*ceil(W/s) (for coding,
the models first extend the image to multiples of the stride by edge
replication, balle.coding.pixels).
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

# tfc.GDN's (alpha_parameter, epsilon_parameter) for each form.
GDN_PARAMETERS = {"paper": (2, 0.5), "simplified": (1, 1)}
GDN_FORMS = tuple(GDN_PARAMETERS)

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def generalized_divisive_normalization(form, inverse, name,
                                       precision="float32"):
  """Returns a GDN (or inverse GDN) layer of the given form.

  "paper":      y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)   (the paper's
                 GDN, Ballé et al. ICLR 2016/2017; tfc alpha=2, epsilon=1/2)
  "simplified": y_i = x_i / (beta_i + sum_j gamma_ij |x_j|)       (tfc's
                 default, Johnston et al. 2019; cheaper, no square root)

  The inverse form multiplies instead of dividing (IGDN, used in g_s).
  """
  return GDN(form, inverse=inverse, name=name, dtype=precision)


class GDN(tfc.GDN):
  """tfc.GDN with its form fixed in Python: the same variables and formula,
  traced to plain Square/Abs, Sqrt and Mul ops.

  tfc.GDN.call picks those ops by testing its alpha and epsilon, which are
  tensors. Inside a tf.function that test is left to AutoGraph, which turns it
  into conditionals, or, in a process started by absl's `app.run` (as
  experiments/train.py and tfc's models/bls2017.py are), into generic `Pow`
  ops (x ** 2, pool ** 0.5, and pow/log in the gradient): 3-5x slower GDN
  layers and a 1.5x slower training step here (benchmarks/README.md).
  """

  def __init__(self, form="paper", **kwargs):
    if form not in GDN_PARAMETERS:
      raise ValueError(
          f"unknown GDN form {form!r}; expected one of {GDN_FORMS}")
    alpha, epsilon = GDN_PARAMETERS[form]
    for fixed in ("alpha_parameter", "epsilon_parameter"):  # from get_config
      kwargs.pop(fixed, None)
    super().__init__(alpha_parameter=alpha, epsilon_parameter=epsilon,
                     **kwargs)
    self.form = form

  def get_config(self):
    return dict(super().get_config(), form=self.form)

  def call(self, inputs):
    if self.form == "paper":
      pool = tf.math.square(inputs)
    else:
      pool = tf.math.abs(inputs)
    gamma = self.gamma
    pool = tf.nn.bias_add(
        tf.nn.conv2d(pool, tf.reshape(gamma, (1, 1) + tuple(gamma.shape)), 1,
                     "VALID"), self.beta)
    if self.form == "paper":
      return inputs * (tf.math.sqrt(pool) if self.inverse else
                       tf.math.rsqrt(pool))
    return inputs * pool if self.inverse else inputs / pool


def _check_precision(precision):
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; expected one of "
                     f"{PRECISIONS}")


def _signal_conv(precision, filters, kernel, name, **kwargs):
  """SignalConv2D, zero "same" padding, bias; VALID+crop in bfloat16."""
  _check_precision(precision)
  return SignalConv2D(
      filters, (kernel, kernel), padding="same_zeros", use_bias=True,
      use_explicit=precision == "float32", dtype=precision, name=name,
      **kwargs)


class MatmulRDFTParameter(tfc.RDFTParameter):
  """tfc's RDFT kernel parameterization, inverted by a matrix product.

  The kernel k (support s1 x s2) is the inverse real 2-D DFT of the variables
  (real, imag), each of shape [C_in, C_out, s1, s2 // 2 + 1]:
      k = irfft2(sqrt(s1 s2) (real + i imag)),
  a linear map, so k = real @ B_re + imag @ B_im over the flattened frequency
  axes, with the basis matrices B computed once with NumPy. Same variables
  (weights are interchangeable with tfc.RDFTParameter) and the same kernel up
  to float rounding, but one small matmul instead of C_in * C_out tiny FFTs
  and their gradients.
  """

  def __init__(self, initial_value, name=None):
    super().__init__(initial_value, name=name)
    if self.shape.rank != 4:
      raise ValueError(f"expected a 2-D kernel, got shape {self.shape}")
    support = tuple(self.shape[:2])
    frequencies = support[0] * (support[1] // 2 + 1)
    unit = np.eye(frequencies).reshape(
        (frequencies, support[0], support[1] // 2 + 1))
    scale = np.sqrt(support[0] * support[1])
    self._basis_real = tf.constant(
        np.fft.irfft2(unit, s=support).reshape(frequencies, -1) * scale,
        dtype=self.dtype)
    self._basis_imag = tf.constant(
        np.fft.irfft2(1j * unit, s=support).reshape(frequencies, -1) * scale,
        dtype=self.dtype)

  def __call__(self, compute_dtype=None):
    """The kernel, shape [s1, s2, C_in, C_out]."""
    in_channels, out_channels = self.shape[2], self.shape[3]
    frequencies = self._basis_real.shape[0]
    real = tf.reshape(self.real, (in_channels * out_channels, frequencies))
    imag = tf.reshape(self.imag, (in_channels * out_channels, frequencies))
    kernel = (tf.linalg.matmul(real, self._basis_real) +
              tf.linalg.matmul(imag, self._basis_imag))
    kernel = tf.reshape(
        kernel, (in_channels, out_channels) + tuple(self.shape[:2]))
    kernel = tf.transpose(kernel, (2, 3, 0, 1))
    return kernel if compute_dtype is None else tf.cast(kernel, compute_dtype)


def _phase_taps(kernel_size, stride, upsample):
  """Index table of a strided "same" convolution in phase (sub-pixel) form.

  With image-side position u = stride * m + r (block m, phase r), tfc's
  "same_zeros" layers compute
      down (corr=True, c = k // 2):   y[m] = sum_u x[u] w[u - stride m + c]
      up   (corr=False, c = k // 2):  y[u] = sum_m x[m] w[u - stride m + c]
  so both only couple block m with blocks m + q, q in [-taps, taps], through
  w[stride q + r + c] (down) or w[r + c - stride q] (up). Returns `taps` and
  an int array [2 taps + 1, stride] of kernel indices (k: a zero tap).
  """
  c = kernel_size // 2
  q = np.arange(-stride, stride + 1)[:, None]
  r = np.arange(stride)[None, :]
  index = stride * q + r + c if not upsample else r + c - stride * q
  used = np.any((index >= 0) & (index < kernel_size), axis=1)
  taps = int(np.max(np.abs(q[used, 0])))
  index = index[stride - taps:stride + taps + 1]
  index = np.where((index >= 0) & (index < kernel_size), index, kernel_size)
  return taps, index


class SignalConv2D(tfc.SignalConv2D):
  """tfc.SignalConv2D whose RDFT kernel uses `MatmulRDFTParameter`.

  With `phase_decomposition=True` a strided "same_zeros" layer is computed as
  a stride-1 convolution between the low-resolution side and the image side
  folded into stride² phase channels (space_to_depth / depth_to_space). It is
  the same linear map with the same variables (outputs agree to float
  rounding, tests/models/test_layers.py), and much faster where the image side
  has few channels: a 9x9 stride-4 convolution on 3 channels becomes a 3x3
  one on 48 (benchmarks/README.md).
  """

  def __init__(self, *args, phase_decomposition=False, **kwargs):
    super().__init__(*args, **kwargs)
    self.phase_decomposition = phase_decomposition
    if not phase_decomposition:
      return
    strides = self.strides_up if not self.corr else self.strides_down
    other = self.strides_down if not self.corr else self.strides_up
    if not (len(self.kernel_support) == 2 and self.padding == "same_zeros" and
            self.data_format == "channels_last" and not self.channel_separable
            and self.extra_pad_end and strides[0] == strides[1] > 1 and
            other == (1, 1) and self.kernel_support[0] == self.kernel_support[1]
            and self.kernel_support[0] % 2 == 1):
      raise ValueError(
          "phase_decomposition needs a 2-D channels_last same_zeros layer with "
          "a square odd kernel and equal strides > 1 down (corr=True) or up "
          "(corr=False)")
    self._stride = strides[0]
    self._taps, index = _phase_taps(self.kernel_support[0], self._stride,
                                    upsample=not self.corr)
    self._phase_index = tf.constant(index.reshape(-1), tf.int32)

  def get_config(self):
    return dict(super().get_config(),
                phase_decomposition=self.phase_decomposition)

  def build(self, input_shape):
    if isinstance(self.kernel_parameter, str) and self.kernel_parameter == "rdft":
      shape = self.kernel_support + (int(input_shape[-1]), self.filters)
      self.kernel_parameter = MatmulRDFTParameter(
          self.kernel_initializer(shape=shape, dtype=self.variable_dtype),
          name="kernel")
    super().build(input_shape)

  def _phase_kernel(self):
    """[2t+1, 2t+1, C', C''] kernel of the phase form (C' or C'' is s² C)."""
    s, width = self._stride, 2 * self._taps + 1
    kernel = self.kernel
    kernel = tf.pad(kernel, [[0, 1], [0, 1], [0, 0], [0, 0]])  # zero tap
    kernel = tf.gather(kernel, self._phase_index, axis=0)
    kernel = tf.gather(kernel, self._phase_index, axis=1)
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    kernel = tf.reshape(kernel, (width, s, width, s, c_in, c_out))
    if self.corr:  # phases join the input channels: [q_y, q_x, (r_y, r_x, C)]
      kernel = tf.transpose(kernel, (0, 2, 1, 3, 4, 5))
      return tf.reshape(kernel, (width, width, s * s * c_in, c_out))
    kernel = tf.transpose(kernel, (0, 2, 4, 1, 3, 5))  # ... and the outputs
    return tf.reshape(kernel, (width, width, c_in, s * s * c_out))

  def call(self, inputs):
    if not self.phase_decomposition:
      return super().call(inputs)
    s = self._stride
    kernel = self._phase_kernel()
    if self.corr:
      # Zeros to a multiple of the stride: "same_zeros" gives ceil(H / s).
      shape = tf.shape(inputs)
      inputs = tf.pad(inputs, [[0, 0], [0, (-shape[1]) % s],
                               [0, (-shape[2]) % s], [0, 0]])
      outputs = tf.nn.conv2d(tf.nn.space_to_depth(inputs, s), kernel, 1,
                             "SAME")
    else:
      outputs = tf.nn.depth_to_space(tf.nn.conv2d(inputs, kernel, 1, "SAME"),
                                     s)
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs


@dataclasses.dataclass(frozen=True)
class Stage:
  """One layer of a `ConvStack`: a filters x kernel x kernel SignalConv2D
  with the given stride (down in an analysis stack, up in a synthesis one),
  then `after`: "gdn", "igdn", "relu" or None (linear)."""
  filters: int
  kernel: int
  stride: int
  after: str = None
  phase_decomposition: bool = False


class ConvStack(tf.keras.Sequential):
  """A chain of `Stage`s: strided convolutions (`upsample=False`, layers
  `<prefix>conv_i`) or transposed ones (`upsample=True`, `<prefix>deconv_i`),
  each followed by its nonlinearity (GDN and IGDN layers `<prefix>gdn_i`,
  `<prefix>igdn_i`, in `gdn_form`). The layer names are the variables'
  names, hence part of saved weights and model ids."""

  def __init__(self, stages, upsample, gdn_form="paper", precision="float32",
               prefix="", name=None):
    super().__init__(name=name)
    kind = "deconv" if upsample else "conv"
    for i, stage in enumerate(stages):
      stride = ({"strides_up": stage.stride} if upsample else
                {"strides_down": stage.stride})
      self.add(_signal_conv(
          precision, stage.filters, stage.kernel, f"{prefix}{kind}_{i}",
          corr=not upsample, phase_decomposition=stage.phase_decomposition,
          activation=tf.nn.relu if stage.after == "relu" else None, **stride))
      if stage.after in ("gdn", "igdn"):
        self.add(generalized_divisive_normalization(
            gdn_form, inverse=stage.after == "igdn",
            name=f"{prefix}{stage.after}_{i}", precision=precision))
      elif stage.after not in ("relu", None):
        raise ValueError(f"unknown nonlinearity {stage.after!r}")
