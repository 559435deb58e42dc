"""The scale-hyperprior model of Ballé, Minnen, Singh, Hwang & Johnston,
"Variational image compression with a scale hyperprior" (ICLR 2018),
architecture "bmshj2018" (balle.models.compression_model).

The latents y = g_a(x) are coded with a zero-mean Gaussian whose scale
sigma is predicted per element from side information, the hyper-latents
z = h_a(|y|) (Sec. 3, Fig. 4):

    g_a: [conv 5x5 /2, GDN] x 3 -> conv 5x5 /2 (M channels)        y: x / 16
    h_a: [conv 3x3 /1, ReLU] -> [conv 5x5 /2, ReLU] -> conv 5x5 /2  z: y / 4
    h_s: [deconv 5x5 x2, ReLU] x 2 -> deconv 3x3 x1 (M channels)    log sigma
    g_s: [deconv 5x5 x2, IGDN] x 3 -> deconv 5x5 x2 (C channels)

(N filters elsewhere). Training replaces rounding by additive uniform noise
in both y and z, and the rate is the information of both:

    R = (-sum log2 p(y~ | sigma) - sum log2 p(z~)) / num_pixels
    p(y~ | sigma) = (N(0, sigma^2) * U(-1/2, 1/2))(y~)     (tfc.NoisyNormal)
    p(z~)         = a per-channel nonparametric density * U(-1/2, 1/2)
                                                      (tfc.NoisyDeepFactorized)
    loss = R + lambda * D

h_a takes |y|, as in the paper: the scale of a zero-mean Gaussian cannot
depend on the signs of y, so dropping them costs h_a nothing it could use.

h_s ends linear and its output is read as log sigma, where the paper ends
with a ReLU and reads sigma. Coding quantizes sigma to a log-spaced table
(NUM_SCALES values from SCALE_MIN to SCALE_MAX, as tfc's models), so the
table index is an affine function of log sigma: the last layer predicts it
directly, with a gradient everywhere. A ReLU output must be floored at
SCALE_MIN before its logarithm, and where it is 0 the scale gets no
gradient at all (a dead unit stays at the smallest scale); exp of a linear
output keeps every sigma positive and trainable. Training uses the
continuous index (the scale exactly, clipped to the table's range); coding
and the evaluation rate (training=False) round it to the nearest entry.

Coding (`freeze_for_coding`): the two entropy models' integer CDF tables
are built once and saved with the model, so encoder and decoder never
rebuild them. So are an exact integer copy of h_s and the table index's
rounding boundaries as integer thresholds (balle.models.integer_network):
the index that chooses each latent's CDF is computed in integers, identical
on every machine, kernel and thread count. Models saved before that have no
exact tables and index from float h_s, as their files did; a model
converted since (`experiments.make_exact`) writes exact files under a new
model id and still decodes the old ones with its `float_index_twin`.

`compress` writes two sections: z (range-coded with its factorized prior),
then y (range-coded with the Gaussian of each element's table index,
computed from the decoded z). An image is extended to multiples of 16
pixels, so y has ceil(H/16) x ceil(W/16) elements and z ceil(H/64) x
ceil(W/64) (g_a's and h_a's zero padding); tiles are multiples
of 64 pixels (`downsampling_factor`). `HyperpriorTileCoder` codes tiles.
"""

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from balle.coding import range_coding
from balle.coding.pixels import replicate_edges_to_multiple
from balle.coding.pixels import to_image_pixels
from balle.coding.pixels import to_model_channels
from balle.models import entropy_models
from balle.models import integer_network
from balle.models import losses
from balle.models.bmshj2018_tiles import HYPER_STRIDE
from balle.models.bmshj2018_tiles import HyperpriorTileCoder
from balle.models.bmshj2018_tiles import LATENT_STRIDE
from balle.models.compression_model import CompressionModel
from balle.models.compression_model import ModelConfig
from balle.models.compression_model import register
from balle.models.layers import ConvStack
from balle.models.layers import Stage

def _transforms(config, precision):
  """(g_a, g_s, h_a, h_s) of the paper's Fig. 4 for `config`."""
  n, m = config.num_filters, config.num_latent_channels
  stacks = dict(gdn_form=config.gdn_form, precision=precision)
  analysis = ConvStack([
      Stage(n, 5, 2, "gdn", phase_decomposition=True),
      Stage(n, 5, 2, "gdn"),
      Stage(n, 5, 2, "gdn"),
      Stage(m, 5, 2),
  ], upsample=False, name="analysis", **stacks)
  synthesis = ConvStack([
      Stage(n, 5, 2, "igdn"),
      Stage(n, 5, 2, "igdn"),
      Stage(n, 5, 2, "igdn"),
      Stage(config.channels, 5, 2, phase_decomposition=True),
  ], upsample=True, name="synthesis", **stacks)
  hyper_analysis = ConvStack([
      Stage(n, 3, 1, "relu"),
      Stage(n, 5, 2, "relu"),
      Stage(n, 5, 2),
  ], upsample=False, prefix="hyper_", name="hyper_analysis", **stacks)
  hyper_synthesis = ConvStack([
      Stage(n, 5, 2, "relu"),
      Stage(n, 5, 2, "relu"),
      Stage(m, 3, 1),  # log sigma (module docstring)
  ], upsample=True, prefix="hyper_", name="hyper_synthesis", **stacks)
  return analysis, synthesis, hyper_analysis, hyper_synthesis


@register
class ScaleHyperpriorModel(CompressionModel):
  """g_a, g_s, h_a, h_s, the hyperprior p(z) and the Gaussian scale model of
  y, trained for bpp(y) + bpp(z) + lambda * D."""

  ARCHITECTURE = "bmshj2018"

  def __init__(self, config=None, precision="float32", **config_kwargs):
    """`config` (architecture "bmshj2018"), or ModelConfig(**config_kwargs)
    with that architecture."""
    if config is None:
      config = ModelConfig(**{"architecture": self.ARCHITECTURE,
                              **config_kwargs})
    super().__init__(config, precision, name="scale_hyperprior")
    (self.analysis, self.synthesis, self.hyper_analysis,
     self.hyper_synthesis) = _transforms(self.config, precision)
    self.hyperprior = tfc.NoisyDeepFactorized(
        batch_shape=[self.config.num_filters])
    self.scale_table = entropy_models.ScaleTable(
        entropy_models.SCALE_MIN, entropy_models.SCALE_MAX,
        entropy_models.NUM_SCALES)
    # Set by freeze_for_coding() or load():
    self.side_entropy_model = None  # z
    self.entropy_model = None  # y
    # Exact h_s and index thresholds (balle.models.integer_network); None: the
    # float indexes of models saved before them.
    self.exact_hyper_synthesis = None
    self.index_thresholds = None
    self._float_index_twin = None
    self.build((None, None, None, self.config.channels))

  def build(self, input_shape):
    self.analysis.build(input_shape)
    latent_shape = self.analysis.compute_output_shape(input_shape)
    self.synthesis.build(latent_shape)
    self.hyper_analysis.build(latent_shape)
    self.hyper_synthesis.build(
        self.hyper_analysis.compute_output_shape(latent_shape))
    self.built = True  # Not Model.build (see balle.models.bls2017).

  @property
  def downsampling_factor(self):
    return LATENT_STRIDE * HYPER_STRIDE

  @property
  def decoder_variables(self):
    return self.synthesis.trainable_variables

  @property
  def prior_variables(self):
    return self.hyperprior.trainable_variables

  def _latent_entropy_model(self, compression, table=None, **kwargs):
    table = table or self.scale_table
    return tfc.LocationScaleIndexedEntropyModel(
        tfc.NoisyNormal, table.count, table.scale, coding_rank=3,
        compression=compression, **kwargs)

  def _log_scales(self, z_hat, crop):
    """log sigma of the latents [crop] (= [top, left, h, w] in latents)
    that h_s predicts from hyper-latents [B, h', w', N], float32."""
    log_scales = tf.cast(self.hyper_synthesis(z_hat), tf.float32)
    return log_scales[:, crop[0]:crop[0] + crop[2],
                      crop[1]:crop[1] + crop[3], :]

  def rate_distortion(self, images, training=True, straight_through=False):
    side_entropy_model = tfc.ContinuousBatchedEntropyModel(
        self.hyperprior, coding_rank=3, compression=False)
    entropy_model = self._latent_entropy_model(compression=False)
    images = tf.convert_to_tensor(images, tf.float32)
    latents = tf.cast(self.analysis(images / 255.), tf.float32)
    hyper_latents = tf.cast(self.hyper_analysis(tf.abs(latents)), tf.float32)
    hyper_latents_hat, side_bits = side_entropy_model(hyper_latents,
                                                      training=training)
    latent_shape = tf.shape(latents)
    log_scales = self._log_scales(hyper_latents_hat,
                                  [0, 0, latent_shape[1], latent_shape[2]])
    indexes = self.scale_table.index(log_scales, rounded=not training)
    latents_hat, bits = entropy_model(latents, indexes, training=training)
    if training and straight_through:
      # Rounded as at coding time, the identity as gradient (round_st).
      latents_hat = entropy_model.quantize(latents)
    shape = tf.shape(images)
    reconstruction = tf.cast(self.synthesis(latents_hat),
                             tf.float32)[:, :shape[1], :shape[2], :]
    num_pixels = tf.cast(tf.reduce_prod(shape[:-1]), tf.float32)
    bpp = (tf.reduce_sum(bits) + tf.reduce_sum(side_bits)) / num_pixels
    distortion = losses.distortion_function(self.config.distortion)(
        images, reconstruction * 255.)
    return bpp, distortion, losses.rate_distortion_loss(
        bpp, distortion, self.config.lmbda)

  # -- coding ---------------------------------------------------------------

  def _build_coding_tables(self):
    self.side_entropy_model = entropy_models.frozen_batched_entropy_model(
        self.hyperprior)
    self.entropy_model = self._latent_entropy_model(compression=True)
    self.make_exact()

  def make_exact(self):
    """Builds the exact integer h_s and index thresholds from the float
    weights and the frozen z tables (whose coded range sets the integer
    activations' scales). The model's id changes (`update_model_ids`)."""
    stack, exponents = integer_network.quantize_conv_stack(
        self.hyper_synthesis.layers,
        entropy_models.coded_ranges(self.side_entropy_model))
    self.exact_hyper_synthesis = stack
    self.index_thresholds = integer_network.index_thresholds(
        self.scale_table.boundaries(), exponents)

  def exact_tables(self):
    if self.exact_hyper_synthesis is None:
      return {}
    return {**self.exact_hyper_synthesis.arrays("hyper_synthesis"),
            "index_thresholds": self.index_thresholds}

  def _restore_exact_tables(self, arrays):
    self.exact_hyper_synthesis = integer_network.IntegerConvStack.from_arrays(
        arrays, "hyper_synthesis")
    self.index_thresholds = np.asarray(arrays["index_thresholds"], np.int64)
    if self.index_thresholds.shape != (self.config.num_latent_channels,
                                       self.scale_table.count - 1):
      raise ValueError(f"index thresholds of shape "
                       f"{self.index_thresholds.shape} do not fit the model")

  def float_index_twin(self):
    if self.float_index_model_id is None:
      raise ValueError("the model has no exact tables: it codes with float "
                       "indexes itself")
    if self._float_index_twin is None:
      twin = type(self)(self.config)
      weights = self.named_weights()
      for name, variable in twin.named_weights().items():
        variable.assign(weights[name])
      twin.side_entropy_model = self.side_entropy_model
      twin.entropy_model = self.entropy_model
      twin.scale_table = self.scale_table
      twin.model_id = self.float_index_model_id
      self._float_index_twin = twin
    return self._float_index_twin

  def _coding_tables_config(self):
    return {"side_entropy_model": self.side_entropy_model.get_config(),
            "entropy_model": dict(
                self.scale_table.config(), prior="NoisyNormal",
                tail_mass=self.entropy_model.tail_mass,
                range_coder_precision=int(
                    self.entropy_model.range_coder_precision))}

  def _restore_coding_tables(self, document):
    side_config = dict(document["side_entropy_model"])
    side_config["prior_shape"] = tuple(side_config["prior_shape"])
    self.side_entropy_model = tfc.ContinuousBatchedEntropyModel(**side_config)
    config = document["entropy_model"]
    if config["prior"] != "NoisyNormal":
      raise ValueError(f"unknown latent prior {config['prior']!r}")
    self.scale_table = entropy_models.ScaleTable(
        config["scale_min"], config["scale_max"],
                                  config["num_scales"])
    # tfc builds this model's tables on construction; load() then assigns
    # the saved tables over them, so no table computed here is ever used.
    self.entropy_model = self._latent_entropy_model(
        compression=True, tail_mass=config["tail_mass"],
        range_coder_precision=config["range_coder_precision"])

  def coding_indexes(self, hyper_latents_hat, crop):
    """int32 table indexes [B, h, w, M] of the latents [crop] (= [top, left,
    h, w] in latents of h_s's output) from decoded hyper-latents [B, h', w',
    N]: exact integers (the same on every machine), or with a model saved
    before exact tables, rounded from float h_s."""
    if self.exact_hyper_synthesis is None:
      return self.scale_table.index(self._log_scales(hyper_latents_hat, crop),
                                    rounded=True)
    values = self.exact_hyper_synthesis(hyper_latents_hat)
    values = values[:, crop[0]:crop[0] + crop[2],
                    crop[1]:crop[1] + crop[3], :]
    return integer_network.threshold_index(values, self.index_thresholds)

  def section_shapes(self, height, width):
    """Two sections: the hyper-latents, ceil(H/64) x ceil(W/64) x N, then
    the latents, ceil(H/16) x ceil(W/16) x M."""
    hyper = self.downsampling_factor
    return [(-(-height // hyper), -(-width // hyper), self.config.num_filters),
            (-(-height // LATENT_STRIDE), -(-width // LATENT_STRIDE),
             self.config.num_latent_channels)]

  def tile_coder(self):
    return HyperpriorTileCoder.of(self)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
  def compress(self, image):
    """uint8 image [H, W, C] -> ((range-coded z, [h', w', N]), (range-coded
    y, [h, w, M])). A gray image on an RGB model is coded as R = G = B."""
    image = to_model_channels(image, self.config.channels)
    image = replicate_edges_to_multiple(image, LATENT_STRIDE)
    latents = self.analysis(tf.cast(image, tf.float32)[None] / 255.)
    hyper_latents = self.hyper_analysis(tf.abs(latents))
    side_strings = self.side_entropy_model.compress(hyper_latents)
    hyper_latents_hat = self.side_entropy_model.quantize(hyper_latents)
    shape = tf.shape(latents)
    indexes = self.coding_indexes(hyper_latents_hat,
                                  [0, 0, shape[1], shape[2]])
    strings = self.entropy_model.compress(latents, indexes)
    return ((side_strings[0], tf.shape(hyper_latents)[1:]),
            (strings[0], shape[1:]))

  @tf.function(input_signature=[
      ((tf.TensorSpec([], tf.string), tf.TensorSpec([3], tf.int32)),
       (tf.TensorSpec([], tf.string), tf.TensorSpec([3], tf.int32))),
      tf.TensorSpec([2], tf.int32),
      tf.TensorSpec([], tf.int32),
  ])
  def decompress(self, sections, image_shape, channels):
    """(((z, [h', w', N]), (y, [h, w, M])), [H, W], C) -> uint8 image
    [H, W, C]; C = 1 with an RGB model returns the rounded mean of R, G, B."""
    (side_string, side_shape), (string, shape) = sections
    hyper_latents_hat = self.side_entropy_model.decompress(side_string[None],
                                                           side_shape[:2])
    indexes = self.coding_indexes(hyper_latents_hat,
                                  [0, 0, shape[0], shape[1]])
    latents = self.entropy_model.decompress(string[None], indexes)
    reconstruction = self.synthesis(latents)[0]
    reconstruction = reconstruction[:image_shape[0], :image_shape[1], :]
    return to_image_pixels(reconstruction, channels < self.config.channels,
                           self.config.channels)

  def section_checks(self, sections):
    """z's check, then y's, decoded with the indexes of the decoded z (as
    `decompress` computes them)."""
    (side_string, side_shape), (string, shape) = sections
    side = self.side_entropy_model
    hyper_latents_hat = range_coding.range_decode(side, side_string,
                                                  side_shape)
    indexes = self.coding_indexes(hyper_latents_hat,
                                  [0, 0, shape[0], shape[1]])[0]
    latents = range_coding.range_decode(self.entropy_model, string, shape,
                                        indexes)
    return [range_coding.check_range_code(side, hyper_latents_hat,
                                          side_string),
            range_coding.check_range_code(self.entropy_model, latents, string,
                                          indexes)]
