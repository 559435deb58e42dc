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
rebuild them. `compress` writes two sections: z (range-coded with its
factorized prior), then y (range-coded with the Gaussian of each element's
table index, computed from the decoded z). An image is extended to
multiples of 16 pixels, so y has ceil(H/16) x ceil(W/16) elements and z
ceil(H/64) x ceil(W/64) (g_a's and h_a's zero padding); tiles are multiples
of 64 pixels (`downsampling_factor`). `HyperpriorTileCoder` codes tiles.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from balle.coding import file_format
from balle.coding import range_coding
from balle.coding import tiling
from balle.coding.pixels import replicate_edges_to_multiple
from balle.coding.pixels import to_image_pixels
from balle.coding.pixels import to_model_channels
from balle.models import losses
from balle.models.compression_model import CompressionModel
from balle.models.compression_model import frozen_batched_entropy_model
from balle.models.compression_model import ModelConfig
from balle.models.compression_model import register
from balle.models.layers import ConvStack
from balle.models.layers import Stage

# The scale table of y's Gaussians: NUM_SCALES scales from SCALE_MIN to
# SCALE_MAX, equally spaced in log scale.
SCALE_MIN = 0.11
SCALE_MAX = 256.
NUM_SCALES = 64
LATENT_STRIDE = 16  # pixels per latent y
HYPER_STRIDE = 4  # latents y per hyper-latent z


class ScaleTable:
  """The log-spaced scales sigma_i = exp(log_min + i * step), i < count."""

  def __init__(self, scale_min, scale_max, count):
    self.scale_min, self.scale_max, self.count = scale_min, scale_max, count
    self.log_min = math.log(scale_min)
    self.step = (math.log(scale_max) - self.log_min) / (count - 1)

  def scale(self, index):
    """sigma of (float) table indexes."""
    return tf.math.exp(self.log_min + self.step * index)

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
    self.scale_table = ScaleTable(SCALE_MIN, SCALE_MAX, NUM_SCALES)
    # Set by freeze_for_coding() or load():
    self.side_entropy_model = None  # z
    self.entropy_model = None  # y
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
    self.side_entropy_model = frozen_batched_entropy_model(self.hyperprior)
    self.entropy_model = self._latent_entropy_model(compression=True)

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
    self.scale_table = ScaleTable(config["scale_min"], config["scale_max"],
                                  config["num_scales"])
    # tfc builds this model's tables on construction; load() then assigns
    # the saved tables over them, so no table computed here is ever used.
    self.entropy_model = self._latent_entropy_model(
        compression=True, tail_mass=config["tail_mass"],
        range_coder_precision=config["range_coder_precision"])

  def coding_indexes(self, hyper_latents_hat, crop):
    """int32 table indexes [B, h, w, M] of the latents [crop] (= [top, left,
    h, w] in latents of h_s's output) from decoded hyper-latents [B, h', w',
    N]: encoder and decoder compute them with the same ops on the same
    inputs."""
    return self.scale_table.index(self._log_scales(hyper_latents_hat, crop),
                                  rounded=True)

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


class HyperpriorTileCoder(tiling.TileCoder):
  """bmshj2018 in tiles: two sections per tile, its z then its y.

  A tile's y needs the scales h_s predicts from z, and h_s near the tile's
  border reads its neighbours' z, so coding runs in two passes:
  1. per tile, g_a and h_a on the tile plus ANALYSIS_HALO hyper-latents of
     pixels: the tile's z (range-coded into the z grid of the image) and y;
  2. per tile, h_s on the tile's part of the z grid plus
     HYPER_SYNTHESIS_HALO hyper-latents: the indexes of its y, range-coded.
  The decoder decodes every z section into the grid, then each y section
  with the indexes of pass 2, computed by the same function from the same
  decoded z, so both sides agree exactly.

  Halos, from the receptive fields (each 5x5 stride-2 layer reaches 2 inputs
  past its centre, a 3x3 one 1): a latent of g_a reads 30 pixels past its
  own, and a hyper-latent of h_a 7 latents past its own (112 pixels), 142 in
  all: ANALYSIS_HALO = 3 hyper-latents (192 pixels). An output of h_s reads
  1.75 hyper-latents past its own: HYPER_SYNTHESIS_HALO = 2. g_s reads under
  2 latents: SYNTHESIS_HALO = 4, as bls2017's.
  """

  ANALYSIS_HALO = 3
  HYPER_SYNTHESIS_HALO = 2
  def __init__(self, model):
    super().__init__(model)
    self._analysis = tf.function(self._analyze, reduce_retracing=True)
    self._indexes = tf.function(self._tile_indexes, reduce_retracing=True)
    self._latent_coding = tf.function(self._code_latents,
                                      reduce_retracing=True)

  def _analyze(self, pixels, crop, hyper_crop):
    """(y[crop], range-coded z[hyper_crop], decoded z[hyper_crop]) of
    g_a(pixels) and h_a(|y|); crops [top, left, h, w]."""
    model = self.model
    latents = model.analysis(tf.cast(pixels, tf.float32)[None] / 255.)
    hyper_latents = model.hyper_analysis(tf.abs(latents))
    latents = latents[:, crop[0]:crop[0] + crop[2],
                      crop[1]:crop[1] + crop[3], :]
    hyper_latents = hyper_latents[
        :, hyper_crop[0]:hyper_crop[0] + hyper_crop[2],
        hyper_crop[1]:hyper_crop[1] + hyper_crop[3], :]
    side = model.side_entropy_model
    return (latents, side.compress(hyper_latents)[0],
            side.quantize(hyper_latents)[0])

  def _tile_indexes(self, hyper_latents_hat, crop):
    """Table indexes [h, w, M] of latents [crop] from a window of z."""
    return self.model.coding_indexes(hyper_latents_hat[None], crop)[0]

  def _code_latents(self, latents, indexes):
    return self.model.entropy_model.compress(latents, indexes[None])[0]

  def _hyper_window(self, hyper_grid, rect):
    """(the window of the z grid that h_s reads for rect's latents, the
    crop of rect's latents in h_s's output)."""
    cells = tiling.grid_span(rect, LATENT_STRIDE * HYPER_STRIDE)
    top, bottom = tiling.span(cells[0], cells[2], self.HYPER_SYNTHESIS_HALO,
                              hyper_grid.shape[0])
    left, right = tiling.span(cells[1], cells[3], self.HYPER_SYNTHESIS_HALO,
                              hyper_grid.shape[1])
    latent_cells = tiling.grid_span(rect, LATENT_STRIDE)
    crop = [latent_cells[0] - top * HYPER_STRIDE,
            latent_cells[1] - left * HYPER_STRIDE,
            latent_cells[2] - latent_cells[0],
            latent_cells[3] - latent_cells[1]]
    return hyper_grid[top:bottom, left:right], crop

  def tile_indexes(self, hyper_grid, rect):
    """int32 table indexes [h, w, M] of rect's latents, from the image's
    decoded z grid [ceil(H/64), ceil(W/64), N] (what both passes use)."""
    window, crop = self._hyper_window(hyper_grid, rect)
    return self._indexes(tf.constant(window), tf.constant(crop)).numpy()

  def _hyper_grid(self, height, width):
    factor = self.model.downsampling_factor
    return np.empty((tiling.ceil_div(height, factor),
                     tiling.ceil_div(width, factor),
                     self.model.config.num_filters), np.float32)

  def encode(self, image, rects):
    height, width = image.shape[:2]
    factor = self.model.downsampling_factor
    hyper_grid = self._hyper_grid(height, width)
    tiles = []
    for rect in rects:  # pass 1: z of every tile
      pixels, top, left = tiling.pixel_window(
          image, rect, self.ANALYSIS_HALO * factor, LATENT_STRIDE,
          self.model.config.channels)
      cells = tiling.grid_span(rect, LATENT_STRIDE)
      hyper_cells = tiling.grid_span(rect, factor)
      crop = [cells[0] - top // LATENT_STRIDE,
              cells[1] - left // LATENT_STRIDE,
              cells[2] - cells[0], cells[3] - cells[1]]
      hyper_crop = [hyper_cells[0] - top // factor,
                    hyper_cells[1] - left // factor,
                    hyper_cells[2] - hyper_cells[0],
                    hyper_cells[3] - hyper_cells[1]]
      latents, side_data, hyper_latents_hat = self._analysis(
          tf.constant(pixels), tf.constant(crop), tf.constant(hyper_crop))
      hyper_grid[hyper_cells[0]:hyper_cells[2],
                 hyper_cells[1]:hyper_cells[3]] = hyper_latents_hat.numpy()
      side = file_format.Section((*hyper_crop[2:], hyper_grid.shape[2]),
                                 side_data.numpy())
      tiles.append((side, latents))
    sections = []
    for rect, (side, latents) in zip(rects, tiles):  # pass 2: y
      indexes = self.tile_indexes(hyper_grid, rect)
      data = self._latent_coding(latents, tf.constant(indexes)).numpy()
      sections += [side, file_format.Section(indexes.shape, data)]
    return sections

  def decode_latents(self, sections, rects, height, width):
    factor = self.model.downsampling_factor
    hyper_grid = self._hyper_grid(height, width)
    for index, rect in enumerate(rects):
      cells = tiling.grid_span(rect, factor)
      hyper_grid[cells[0]:cells[2], cells[1]:cells[3]] = (
          range_coding.decode_section(self.model.side_entropy_model,
                                      sections[2 * index], 2 * index))
    latents = np.empty((tiling.ceil_div(height, LATENT_STRIDE),
                        tiling.ceil_div(width, LATENT_STRIDE),
                        self.model.config.num_latent_channels), np.float32)
    for index, rect in enumerate(rects):
      cells = tiling.grid_span(rect, LATENT_STRIDE)
      latents[cells[0]:cells[2], cells[1]:cells[3]] = (
          range_coding.decode_section(
              self.model.entropy_model, sections[2 * index + 1],
              2 * index + 1, indexes=self.tile_indexes(hyper_grid, rect)))
    return latents
