"""Analysis and synthesis transforms of Ballé, Laparra & Simoncelli (ICLR 2017).

g_a maps an image x (values in [0, 1]) to latents y; g_s maps quantized latents
back to an image. Three stages each, as in the paper (Sec. 2, Fig. 1), so a
latent pixel covers 16x16 image pixels:

    g_a: [conv 9x9 /4, GDN] -> [conv 5x5 /2, GDN] -> conv 5x5 /2
    g_s: [deconv 5x5 x2, IGDN] -> [deconv 5x5 x2, IGDN] -> deconv 9x9 x4

Two choices differ from a literal reading of the paper's figure; both follow
tensorflow-compression's reference bls2017 model and were measured here:
- No GDN on the latents (end of g_a) and no IGDN on them (start of g_s). A GDN
  there bounds the latents at initialization (|y| < sqrt(1/gamma) ~ 3.2 with
  tfc's initial gamma = 0.1), leaving few quantization levels: our first CPU
  run with it reached only 24 dB after 6.6k steps, then diverged.
- Convolutions are tfc's SignalConv2D with kernels parameterized in the
  frequency domain (RDFT). With plain Keras convolutions training reached
  7 dB after 300 steps; with RDFT kernels, 25 dB.

Padding is zero "same" padding: an H x W image gives ceil(H/16) x ceil(W/16)
latents, and g_s returns a 16*ceil(H/16) x 16*ceil(W/16) image that the model
crops back to H x W.
"""

import tensorflow as tf
import tensorflow_compression as tfc

DOWNSAMPLING_FACTOR = 16

GDN_FORMS = ("paper", "simplified")


def generalized_divisive_normalization(form, inverse, name):
  """Returns a GDN (or inverse GDN) layer of the given form.

  "paper":      y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)   (the paper's
                 GDN, Ballé et al. ICLR 2016/2017; tfc alpha=2, epsilon=1/2)
  "simplified": y_i = x_i / (beta_i + sum_j gamma_ij |x_j|)       (tfc's
                 default, Johnston et al. 2019; cheaper, no square root)

  The inverse form multiplies instead of dividing (IGDN, used in g_s).
  """
  if form == "paper":
    alpha, epsilon = 2, 0.5
  elif form == "simplified":
    alpha, epsilon = 1, 1
  else:
    raise ValueError(f"unknown GDN form {form!r}; expected one of {GDN_FORMS}")
  return tfc.GDN(inverse=inverse, alpha_parameter=alpha,
                 epsilon_parameter=epsilon, name=name)


class AnalysisTransform(tf.keras.Sequential):
  """g_a: image in [0, 1], shape [B, H, W, C] -> latents [B, H/16, W/16, N]."""

  def __init__(self, num_filters, gdn_form="paper", name="analysis"):
    super().__init__(name=name)
    stages = [(9, 4), (5, 2), (5, 2)]
    for i, (kernel, stride) in enumerate(stages):
      self.add(tfc.SignalConv2D(
          num_filters, (kernel, kernel), corr=True, strides_down=stride,
          padding="same_zeros", use_bias=True, name=f"conv_{i}"))
      if i < len(stages) - 1:
        self.add(generalized_divisive_normalization(
            gdn_form, inverse=False, name=f"gdn_{i}"))


class SynthesisTransform(tf.keras.Sequential):
  """g_s: latents [B, h, w, N] -> image [B, 16h, 16w, C], nominally in [0, 1]."""

  def __init__(self, num_filters, channels, gdn_form="paper",
               name="synthesis"):
    super().__init__(name=name)
    stages = [(num_filters, 5, 2), (num_filters, 5, 2), (channels, 9, 4)]
    for i, (filters, kernel, stride) in enumerate(stages):
      self.add(tfc.SignalConv2D(
          filters, (kernel, kernel), corr=False, strides_up=stride,
          padding="same_zeros", use_bias=True, name=f"deconv_{i}"))
      if i < len(stages) - 1:
        self.add(generalized_divisive_normalization(
            gdn_form, inverse=True, name=f"igdn_{i}"))
