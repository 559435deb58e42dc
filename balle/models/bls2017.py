"""The factorized-prior model of Ballé, Laparra & Simoncelli, "End-to-end
optimized image compression" (ICLR 2017), architecture "bls2017"
(balle.models.compression_model): its transforms and its model.

g_a maps an image x (values in [0, 1]) to latents y; g_s maps quantized
latents back to an image. Three stages each, as in the paper (Sec. 2,
Fig. 1), so a latent pixel covers 16x16 image pixels:

    g_a: [conv 9x9 /4, GDN] -> [conv 5x5 /2, GDN] -> conv 5x5 /2
    g_s: [deconv 5x5 x2, IGDN] -> [deconv 5x5 x2, IGDN] -> deconv 9x9 x4

with N filters in each layer but g_a's last, which has M (the latents'
channels, N unless configured otherwise; g_s's first takes M). The layers
are balle.models.layers'.

Two choices differ from a literal reading of the paper's figure; both follow
tensorflow-compression's reference bls2017 model and were measured here:
- No GDN on the latents (end of g_a) and no IGDN on them (start of g_s). A GDN
  there bounds the latents at initialization (|y| < sqrt(1/gamma) ~ 3.2 with
  tfc's initial gamma = 0.1), leaving few quantization levels: our first CPU
  run with it reached only 24 dB after 6.6k steps, then diverged.
- Convolutions with kernels in the frequency domain (RDFT), balle.models.layers.

    x --g_a--> y --(+u | round)--> y_hat --g_s--> x_hat
                     p(y_hat): per-channel factorized prior

Training (paper, Sec. 3): rounding is replaced by additive uniform noise,
y~ = g_a(x) + u with u ~ U(-1/2, 1/2), and the rate is the negative
log-likelihood of y~ under a learned per-channel density p (tfc's
`NoisyDeepFactorized`: a nonparametric density convolved with the same noise):

    loss = R + lambda * D,   R = -sum log2 p(y~) / num_pixels   (bits per pixel)
                             D = mean((x - g_s(y~))^2)          (0..255 scale)

(D is the configuration's distortion, balle.models.losses; MSE above.)

Coding: `freeze_for_coding()` turns p into integer CDF tables (variables of the
model, saved with it) once; `compress` rounds y and range-codes it with those
tables as one section, `decompress` decodes and applies g_s. The decoder never
rebuilds the tables from floating-point weights, so encoder and decoder agree
bit for bit.

Function-preserving warm starts (more filters, rescaled latents) are
balle.models.widen's, offered as `widen_from` and `rescale_latents`.
"""


import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from balle.coding import file_format
from balle.coding import range_coding
from balle.coding import tiling
from balle.coding.pixels import replicate_edges_to_multiple
from balle.coding.pixels import to_image_pixels
from balle.coding.pixels import to_model_channels
from balle.models import layers
from balle.models import losses
from balle.models import widen
from balle.models.compression_model import CompressionModel
from balle.models.compression_model import ModelConfig
from balle.models.compression_model import register
from balle.models.entropy_models import frozen_batched_entropy_model


DOWNSAMPLING_FACTOR = 16  # pixels per latent along each side


class AnalysisTransform(layers.ConvStack):
  """g_a: image in [0, 1], shape [B, H, W, C] -> latents [B, H/16, W/16, M]
  (M = latent_channels, or num_filters when 0)."""

  def __init__(self, num_filters, gdn_form="paper", precision="float32",
               name="analysis", latent_channels=0):
    super().__init__([
        layers.Stage(num_filters, 9, 4, "gdn", phase_decomposition=True),
        layers.Stage(num_filters, 5, 2, "gdn"),
        layers.Stage(latent_channels or num_filters, 5, 2),
    ], upsample=False, gdn_form=gdn_form, precision=precision, name=name)


class SynthesisTransform(layers.ConvStack):
  """g_s: latents [B, h, w, M] -> image [B, 16h, 16w, C], nominally in
  [0, 1]."""

  def __init__(self, num_filters, channels, gdn_form="paper",
               precision="float32", name="synthesis"):
    super().__init__([
        layers.Stage(num_filters, 5, 2, "igdn"),
        layers.Stage(num_filters, 5, 2, "igdn"),
        layers.Stage(channels, 9, 4, phase_decomposition=True),
    ], upsample=True, gdn_form=gdn_form, precision=precision, name=name)


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
    self.analysis = AnalysisTransform(
        c.num_filters, c.gdn_form, precision,
        latent_channels=c.num_latent_channels)
    self.synthesis = SynthesisTransform(
        c.num_filters, c.channels, c.gdn_form, precision)
    self.prior = tfc.NoisyDeepFactorized(batch_shape=[c.num_latent_channels])
    self.entropy_model = None  # Set by freeze_for_coding() or load().
    self.build((None, None, None, c.channels))

  def build(self, input_shape):
    self.analysis.build(input_shape)
    self.synthesis.build(self.analysis.compute_output_shape(input_shape))
    # Not Model.build: it would trace `call` in a graph just to build layers.
    self.built = True

  @property
  def downsampling_factor(self):
    return DOWNSAMPLING_FACTOR

  @property
  def decoder_variables(self):
    return self.synthesis.trainable_variables

  @property
  def prior_variables(self):
    return self.prior.trainable_variables

  def widen_from(self, narrow):
    widen.widen(narrow, self)

  def rescale_latents(self, factor):
    widen.rescale_latents(self, factor)

  def rate_distortion(self, images, training=True, straight_through=False):
    entropy_model = tfc.ContinuousBatchedEntropyModel(
        self.prior, coding_rank=3, compression=False)
    images = tf.convert_to_tensor(images, tf.float32)
    latents = tf.cast(self.analysis(images / 255.), tf.float32)
    latents_hat, bits = entropy_model(latents, training=training)
    if training and straight_through:
      # Rounded as at coding time (offsets included), gradient passed as is.
      latents_hat = latents + tf.stop_gradient(
          entropy_model.quantize(latents) - latents)
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
    self.entropy_model = frozen_batched_entropy_model(self.prior)

  def _coding_tables_config(self):
    return {"entropy_model": self.entropy_model.get_config()}

  def _restore_coding_tables(self, document):
    entropy_config = dict(document["entropy_model"])
    entropy_config["prior_shape"] = tuple(entropy_config["prior_shape"])
    self.entropy_model = tfc.ContinuousBatchedEntropyModel(**entropy_config)

  def section_shapes(self, height, width):
    """One section: the latents, ceil(H/16) x ceil(W/16) x M."""
    factor = self.downsampling_factor
    return [(-(-height // factor), -(-width // factor),
             self.config.num_latent_channels)]

  def tile_coder(self):
    return FactorizedTileCoder.of(self)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
  def compress(self, image):
    """uint8 image [H, W, C] -> ((range-coded latents, [h, w, M]),).

    C is the model's channel count, or 1 for an RGB model: a grayscale image
    is then coded as RGB with R = G = B (the header keeps C = 1).
    """
    image = to_model_channels(image, self.config.channels)
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
    """(((range-coded latents, [h, w, M]),), [H, W], C) -> uint8 image
    [H, W, C].

    C = 1 with an RGB model returns the rounded mean (R + G + B + 1) // 3.
    """
    (string, shape), = sections
    latents = self.entropy_model.decompress(string[None], shape[:2])
    reconstruction = self.synthesis(latents)[0]
    reconstruction = reconstruction[:image_shape[0], :image_shape[1], :]
    return to_image_pixels(reconstruction, channels < self.config.channels,
                           self.config.channels)

  def section_checks(self, sections):
    (string, shape), = sections
    latents = range_coding.range_decode(self.entropy_model, string, shape)
    return [range_coding.check_range_code(self.entropy_model, latents, string)]


class FactorizedTileCoder(tiling.TileCoder):
  """bls2017 in tiles: one section per tile, its latents, computed by g_a on
  the tile plus ANALYSIS_HALO latents' worth of pixels (g_a's receptive
  field reaches 28 pixels, under 2 latents, past a latent's own 16)."""

  ANALYSIS_HALO = 4
  def __init__(self, model):
    super().__init__(model)
    self._analysis = tf.function(self._analyze, reduce_retracing=True)

  def _analyze(self, pixels, crop):
    """Range-codes latents[crop] of g_a(pixels); crop = [top, left, h, w]."""
    latents = self.model.analysis(tf.cast(pixels, tf.float32)[None] / 255.)
    latents = latents[:, crop[0]:crop[0] + crop[2],
                      crop[1]:crop[1] + crop[3], :]
    return self.model.entropy_model.compress(latents)[0]

  def encode(self, image, rects):
    stride = self.LATENT_STRIDE
    sections = []
    for rect in rects:
      pixels, top, left = tiling.pixel_window(
          image, rect, self.ANALYSIS_HALO * stride, stride,
          self.model.config.channels)
      cells = tiling.grid_span(rect, stride)
      shape = (cells[2] - cells[0], cells[3] - cells[1])
      crop = [cells[0] - top // stride, cells[1] - left // stride, *shape]
      data = self._analysis(tf.constant(pixels), tf.constant(crop)).numpy()
      sections.append(file_format.Section(
          (*shape, self.model.config.num_latent_channels), data))
    return sections

  def decode_latents(self, sections, rects, height, width):
    stride = self.LATENT_STRIDE
    latents = np.empty((tiling.ceil_div(height, stride),
                        tiling.ceil_div(width, stride),
                        self.model.config.num_latent_channels), np.float32)
    for index, (rect, section) in enumerate(zip(rects, sections)):
      top, left = rect[0] // stride, rect[1] // stride
      rows, columns = section.shape[:2]
      latents[top:top + rows, left:left + columns] = (
          range_coding.decode_section(self.model.entropy_model, section,
                                      index))
    return latents
