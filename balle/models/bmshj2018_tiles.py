"""The scale hyperprior (balle.models.bmshj2018) in tiles, and the geometry
of its sections: y has one element per LATENT_STRIDE pixels along each side,
z one per HYPER_STRIDE elements of y.
"""

import numpy as np
import tensorflow as tf

from balle.coding import file_format
from balle.coding import range_coding
from balle.coding import tiling

LATENT_STRIDE = 16  # pixels per latent y
HYPER_STRIDE = 4  # latents y per hyper-latent z


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
