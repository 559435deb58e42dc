"""The factorized-prior model of Ballé, Laparra & Simoncelli (ICLR 2017),
architecture "bls2017" (balle.compression_model).

Training (paper, Sec. 3): rounding is replaced by additive uniform noise,
y~ = g_a(x) + u with u ~ U(-1/2, 1/2), and the rate is the negative
log-likelihood of y~ under a learned per-channel density p (tfc's
`NoisyDeepFactorized`: a nonparametric density convolved with the same noise):

    loss = R + lambda * D,   R = -sum log2 p(y~) / num_pixels   (bits per pixel)
                             D = mean((x - g_s(y~))^2)          (0..255 scale)

(D is the configuration's distortion, balle.losses; MSE above.)

Coding: `freeze_for_coding()` turns p into integer CDF tables (variables of the
model, saved with it) once; `compress` rounds y and range-codes it with those
tables as one section, `decompress` decodes and applies g_s. The decoder never
rebuilds the tables from floating-point weights, so encoder and decoder agree
bit for bit.
"""

import tensorflow as tf
import tensorflow_compression as tfc

from balle import losses
from balle import transforms
from balle.compression_model import CompressionModel
from balle.compression_model import ModelConfig
from balle.compression_model import register


def replicate_edges_to_multiple(image, multiple):
  """Pads [H, W, C] at the bottom and right, repeating the last row and
  column, to multiples of `multiple`. The decoder crops the padding away;
  coding a smooth extension instead of the convolutions' zero padding keeps
  the borders of odd-sized images sharp at no cost in bits."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  image = tf.concat(
      [image, tf.repeat(image[-1:], (-height) % multiple, axis=0)], axis=0)
  return tf.concat(
      [image, tf.repeat(image[:, -1:], (-width) % multiple, axis=1)], axis=1)


@register
class FactorizedPriorModel(CompressionModel):
  """g_a, g_s and the factorized prior, trained for bpp + lambda * D."""

  ARCHITECTURE = "bls2017"

  def __init__(self, config=None, precision="float32", **config_kwargs):
    """`config`, or ModelConfig(**config_kwargs)."""
    super().__init__(
        config if config is not None else ModelConfig(**config_kwargs),
        precision, name="factorized_prior")
    c = self.config
    self.analysis = transforms.AnalysisTransform(
        c.num_filters, c.gdn_form, precision)
    self.synthesis = transforms.SynthesisTransform(
        c.num_filters, c.channels, c.gdn_form, precision)
    self.prior = tfc.NoisyDeepFactorized(batch_shape=[c.num_filters])
    self.entropy_model = None  # Set by freeze_for_coding() or load().
    self.build((None, None, None, c.channels))

  def build(self, input_shape):
    self.analysis.build(input_shape)
    self.synthesis.build(self.analysis.compute_output_shape(input_shape))
    # Not Model.build: it would trace `call` in a graph just to build layers.
    self.built = True

  @property
  def downsampling_factor(self):
    return transforms.DOWNSAMPLING_FACTOR

  @property
  def decoder_variables(self):
    return self.synthesis.trainable_variables

  @property
  def prior_variables(self):
    return self.prior.trainable_variables

  def rate_distortion(self, images, training=True):
    entropy_model = tfc.ContinuousBatchedEntropyModel(
        self.prior, coding_rank=3, compression=False)
    images = tf.convert_to_tensor(images, tf.float32)
    latents = tf.cast(self.analysis(images / 255.), tf.float32)
    latents_hat, bits = entropy_model(latents, training=training)
    shape = tf.shape(images)
    reconstruction = tf.cast(self.synthesis(latents_hat),
                             tf.float32)[:, :shape[1], :shape[2], :]
    num_pixels = tf.cast(tf.reduce_prod(shape[:-1]), tf.float32)
    bpp = tf.reduce_sum(bits) / num_pixels
    distortion = losses.distortion_function(self.config.distortion)(
        images, reconstruction * 255.)
    return bpp, distortion, losses.rate_distortion_loss(
        bpp, distortion, self.config.lmbda)

  # -- coding ---------------------------------------------------------------

  def _build_coding_tables(self):
    self.entropy_model = tfc.ContinuousBatchedEntropyModel(
        self.prior, coding_rank=3, compression=True)

  def _coding_tables_config(self):
    return {"entropy_model": self.entropy_model.get_config()}

  def _restore_coding_tables(self, document):
    entropy_config = dict(document["entropy_model"])
    entropy_config["prior_shape"] = tuple(entropy_config["prior_shape"])
    self.entropy_model = tfc.ContinuousBatchedEntropyModel(**entropy_config)

  def section_shapes(self, height, width):
    """One section: the latents, ceil(H/16) x ceil(W/16) x N."""
    factor = self.downsampling_factor
    return [(-(-height // factor), -(-width // factor),
             self.config.num_filters)]

  @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
  def compress(self, image):
    """uint8 image [H, W, C] -> ((range-coded latents, [h, w, N]),).

    C is the model's channel count, or 1 for an RGB model: a grayscale image
    is then coded as RGB with R = G = B (the header keeps C = 1).
    """
    image = tf.cond(
        tf.shape(image)[2] < self.config.channels,
        lambda: tf.repeat(image, self.config.channels, axis=2),
        lambda: image)
    image = tf.ensure_shape(image, [None, None, self.config.channels])
    image = replicate_edges_to_multiple(image, self.downsampling_factor)
    latents = self.analysis(tf.cast(image, tf.float32)[None] / 255.)
    strings = self.entropy_model.compress(latents)
    return ((strings[0], tf.shape(latents)[1:]),)

  @tf.function(input_signature=[
      ((tf.TensorSpec([], tf.string), tf.TensorSpec([3], tf.int32)),),
      tf.TensorSpec([2], tf.int32),
      tf.TensorSpec([], tf.int32),
  ])
  def decompress(self, sections, image_shape, channels):
    """(((range-coded latents, [h, w, N]),), [H, W], C) -> uint8 image
    [H, W, C].

    C = 1 with an RGB model returns the rounded mean (R + G + B + 1) // 3.
    """
    (string, shape), = sections
    latents = self.entropy_model.decompress(string[None], shape[:2])
    reconstruction = self.synthesis(latents)[0]
    reconstruction = reconstruction[:image_shape[0], :image_shape[1], :]
    image = tf.saturate_cast(tf.round(reconstruction * 255.), tf.uint8)
    if self.config.channels == 1:
      return image
    return tf.cond(
        channels < self.config.channels,
        lambda: tf.cast((tf.reduce_sum(tf.cast(image, tf.int32), axis=2,
                                       keepdims=True) + 1) // 3, tf.uint8),
        lambda: image)
