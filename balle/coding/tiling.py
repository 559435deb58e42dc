"""Coding an image in tiles with halos of context: what every architecture's
tile coder shares (`TileCoder`; each model's `tile_coder()` is a subclass).

A file's image is cut into T x T tiles (file_format.tiles). The encoder runs
the analysis on each tile plus a halo of its neighbours' pixels and keeps
the tile's own latents; the decoder decodes every tile's sections into
latent grids of the whole image, then runs the synthesis on tiles plus a
halo of latents and keeps each tile's own pixels. Halos cover the
transforms' receptive fields and are multiples of the strides, so every
kept value is computed from the same inputs as for the whole image: tiled
latents and pixels equal whole-image ones (the tests check it).

The subclass decides which sections a tile has and how they depend on
each other (`encode`, `decode_latents`); the final synthesis pass on the
latents y ([H/16, W/16, M] for both architectures) is `decode_image`.
"""

import weakref

import numpy as np
import tensorflow as tf

from balle.coding.pixels import to_image_pixels


def ceil_div(a, b):
  return -(-a // b)


def span(start, stop, halo, limit):
  """[start - halo, stop + halo) clipped to [0, limit)."""
  return max(start - halo, 0), min(stop + halo, limit)


def pixel_window(image, rect, halo, multiple, channels):
  """(pixels, top, left): rect = (top, left, bottom, right) of `image` plus
  `halo` pixels each side, within the image extended to multiples of
  `multiple` by repeating its last row and column (as the models' whole-image
  compress extends it), repeated to `channels` channels (a gray image on an
  RGB model). `halo` and rect's corner must be multiples of `multiple`."""
  height, width = image.shape[:2]
  top, bottom = span(rect[0], rect[2], halo,
                     ceil_div(height, multiple) * multiple)
  left, right = span(rect[1], rect[3], halo,
                     ceil_div(width, multiple) * multiple)
  pixels = image[top:min(bottom, height), left:min(right, width)]
  pixels = np.pad(pixels, ((0, bottom - min(bottom, height)),
                           (0, right - min(right, width)), (0, 0)),
                  mode="edge")
  if pixels.shape[2] < channels:
    pixels = np.repeat(pixels, channels, axis=2)
  return pixels, top, left


def grid_span(rect, stride):
  """(top, left, bottom, right) of rect's cells in a grid of `stride` pixels
  per cell."""
  return (rect[0] // stride, rect[1] // stride, ceil_div(rect[2], stride),
          ceil_div(rect[3], stride))


# Each model's tile coder (`TileCoder.of`), gone with the model.
_CODERS = weakref.WeakKeyDictionary()


class TileCoder:
  """One frozen model's per-tile coding (traced functions cached here).

  Subclasses set LATENT_STRIDE (pixels per latent y) and implement
  `encode` and `decode_latents`."""

  LATENT_STRIDE = 16
  # Latents of context around a tile for the synthesis (its receptive field
  # is under 2 latents each side for both architectures).
  SYNTHESIS_HALO = 4

  @classmethod
  def of(cls, model):
    """The coder of `model`, made once per model (its traced functions are
    reused for every image the model codes)."""
    if model not in _CODERS:
      _CODERS[model] = cls(model)
    return _CODERS[model]

  def __init__(self, model):
    model._require_frozen()  # pylint: disable=protected-access
    self.model = model
    self._synthesis = tf.function(self._synthesize, reduce_retracing=True)

  def encode(self, image, rects):
    """uint8 image [H, W, C] (C: the model's or 1) and its tiles -> the
    file_format.Sections of every tile, in file order."""
    raise NotImplementedError

  def decode_latents(self, sections, rects, height, width):
    """The sections of an H x W image's tiles (shapes already checked) ->
    the latents y of the whole image, float32 [ceil(H/16), ceil(W/16), M].
    Decodes and checks every section (balle.coding.range_coding): FormatError
    unless each is exactly the range coding of what it decodes to."""
    raise NotImplementedError

  def _synthesize(self, latents, crop, gray):
    """uint8 pixels[crop] of g_s(latents), crop = [top, left, h, w]; the
    rounding and the gray mean are the model's `decompress`'s."""
    pixels = self.model.synthesis(latents[None])[0]
    pixels = pixels[crop[0]:crop[0] + crop[2], crop[1]:crop[1] + crop[3]]
    return to_image_pixels(pixels, gray, self.model.config.channels)

  def decode_image(self, latents, height, width, channels, rects):
    """uint8 image [H, W, channels] from the latent grid, g_s run on each of
    `rects` (any tiling of the image into multiples of LATENT_STRIDE) with
    SYNTHESIS_HALO latents of context."""
    image = np.empty((height, width, channels), np.uint8)
    stride = self.LATENT_STRIDE
    gray = tf.constant(channels < self.model.config.channels)
    for rect in rects:
      cells = grid_span(rect, stride)
      top, bottom = span(cells[0], cells[2], self.SYNTHESIS_HALO,
                         latents.shape[0])
      left, right = span(cells[1], cells[3], self.SYNTHESIS_HALO,
                         latents.shape[1])
      crop = [rect[0] - top * stride, rect[1] - left * stride,
              rect[2] - rect[0], rect[3] - rect[1]]
      image[rect[0]:rect[2], rect[1]:rect[3]] = self._synthesis(
          tf.constant(latents[top:bottom, left:right]), tf.constant(crop),
          gray).numpy()
    return image
