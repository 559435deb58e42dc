"""A side-by-side picture: one crop of an image as each codec decodes it.

Every entry codes the WHOLE image for real and is measured on it (bpp of the
complete file, balle.evaluation.metrics.bits_per_pixel; RGB PSNR,
metrics.psnr_rgb):

- a balle model: balle.coding.codec.compress_image / decompress_image;
- a classic codec of balle.evaluation.baselines, set to about the same bpp as a
  target (default: the first model's): a codec with a "quality" setting (JPEG,
  ...) gets the integer quality in QUALITY_RANGE whose file bpp is closest to
  the target; one with a "target_bpp" setting (JPEG 2000) gets the target as its
  rate, and its real bpp is then measured from the file.

The same crop (x, y, w, h) of the original and of every decoded image is
enlarged by an integer factor with nearest-neighbour (so the artifacts stay
visible) and laid out in a grid, original first, each tile labelled
"<name>: <bpp> bpp, <PSNR> dB", under a caption saying that the figures are
of the whole image.
"""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from balle.coding import codec as codec_lib
from balle.evaluation import baselines
from balle.evaluation import metrics

DEFAULT_CROP_SIZE = (192, 128)  # (w, h) of the default crop, pixels
QUALITY_RANGE = (1, 95)         # integer qualities searched for a target bpp
FONT_SIZE = 14                  # pixels, Pillow's default font
MARGIN = 8                      # pixels around tiles and text
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (0, 0, 0)


# -- coding every entry -------------------------------------------------------


def _figure(name, setting_name, setting, image, data, decoded):
  """{"name", "setting_name", "setting", "bpp", "psnr_db"} of one coding."""
  height, width = image.shape[:2]
  return {"name": name, "setting_name": setting_name, "setting": setting,
          "bpp": metrics.bits_per_pixel(len(data), height, width),
          "psnr_db": metrics.psnr_rgb(image, decoded)}


def code_with_model(model, image):
  """(figure, decoded image) of `image` coded to a .balle file by `model`."""
  data = codec_lib.compress_image(model, image)
  decoded = codec_lib.decompress_image(data, model)
  name = model.config.name or f"{model.ARCHITECTURE}-{model.config.lmbda}"
  return _figure(name, "lmbda", model.config.lmbda, image, data,
                 decoded), decoded


def quality_for_bpp(codec, image, target_bpp, qualities=QUALITY_RANGE):
  """(quality, file bytes): the integer quality in `qualities` (lo, hi) whose
  file of `image` has the bpp closest to `target_bpp`.

  Bisection finds where the bpp crosses the target (bpp grows with quality,
  nearly always); the nearer side wins, then a walk to closer neighbours
  corrects any local dip.
  """
  height, width = image.shape[:2]
  files = {}

  def bpp(quality):
    if quality not in files:
      files[quality] = codec.encode(image, quality)
    return metrics.bits_per_pixel(len(files[quality]), height, width)

  def distance(quality):
    return abs(bpp(quality) - target_bpp)

  low, high = qualities
  while low < high:  # smallest quality with bpp >= target (or high)
    middle = (low + high) // 2
    if bpp(middle) < target_bpp:
      low = middle + 1
    else:
      high = middle
  best = min((q for q in (low - 1, low) if q >= qualities[0]), key=distance)
  while True:
    neighbours = [q for q in (best - 1, best + 1)
                  if qualities[0] <= q <= qualities[1]]
    closer = min(neighbours, key=distance, default=best)
    if distance(closer) >= distance(best):
      return best, files[best]
    best = closer


def code_with_codec(codec, image, target_bpp):
  """(figure, decoded image) of `image` coded by a classic `codec` at about
  `target_bpp` (see the module doc)."""
  if codec.setting_name == "quality":
    setting, data = quality_for_bpp(codec, image, target_bpp)
  elif codec.setting_name == "target_bpp":
    setting = round(float(target_bpp), 4)
    data = codec.encode(image, setting)
  else:
    raise ValueError(f"{codec.name}: no way to aim setting "
                     f"{codec.setting_name!r} at a bpp")
  decoded = baselines.decode(data, image.shape[-1])
  return _figure(codec.label, codec.setting_name, setting, image, data,
                 decoded), decoded


# -- the crop -----------------------------------------------------------------


def check_crop(crop, height, width):
  """Raises ValueError unless crop (x, y, w, h) lies inside H x W."""
  x, y, crop_width, crop_height = crop
  if crop_width <= 0 or crop_height <= 0:
    raise ValueError(f"crop {tuple(crop)} must have a positive width and "
                     "height")
  if x < 0 or y < 0 or x + crop_width > width or y + crop_height > height:
    raise ValueError(f"crop (x, y, w, h) = {tuple(crop)} is outside the "
                     f"{width}x{height} image")


def detailed_crop(image, size=DEFAULT_CROP_SIZE, stride=8):
  """(x, y, w, h) of the window of `size` (w, h; clipped to the image), on a
  grid of `stride` pixels, with the largest sum of gradient magnitudes:
  where the image has the most detail to lose."""
  height, width = image.shape[:2]
  crop_width, crop_height = min(size[0], width), min(size[1], height)
  gray = image.astype(np.float64).mean(axis=-1)
  detail = np.zeros_like(gray)
  detail[:, 1:] += np.abs(np.diff(gray, axis=1))
  detail[1:, :] += np.abs(np.diff(gray, axis=0))
  # Summed-area table: the sum over any window in four look-ups.
  table = np.pad(detail.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
  ys = np.arange(0, height - crop_height + 1, stride)
  xs = np.arange(0, width - crop_width + 1, stride)
  sums = (table[ys[:, None] + crop_height, xs[None, :] + crop_width]
          - table[ys[:, None], xs[None, :] + crop_width]
          - table[ys[:, None] + crop_height, xs[None, :]]
          + table[ys[:, None], xs[None, :]])
  row, column = np.unravel_index(np.argmax(sums), sums.shape)
  return int(xs[column]), int(ys[row]), crop_width, crop_height


def zoomed_crop(image, crop, zoom):
  """The crop (x, y, w, h) of `image`, each pixel repeated zoom x zoom
  times (nearest neighbour), as RGB."""
  x, y, crop_width, crop_height = crop
  tile = image[y:y + crop_height, x:x + crop_width]
  if tile.shape[-1] == 1:
    tile = np.repeat(tile, 3, axis=-1)
  return np.repeat(np.repeat(tile, zoom, axis=0), zoom, axis=1)


# -- the picture --------------------------------------------------------------


def tile_label(figure):
  """"<name>: <bpp> bpp, <PSNR> dB" of one figure."""
  return (f"{figure['name']}: {figure['bpp']:.3f} bpp, "
          f"{figure['psnr_db']:.2f} dB")


def compose(tiles, labels, caption, columns=None):
  """(picture, boxes): `tiles` (equal-size uint8 RGB arrays) in a grid of
  `columns` (default ceil(sqrt(n))), each with its label below, `caption`
  on top; boxes are the (left, top) of each tile in the picture."""
  font = ImageFont.load_default(size=FONT_SIZE)
  measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

  def text_width(text):
    return math.ceil(measure.textlength(text, font=font))

  line_height = FONT_SIZE + MARGIN // 2
  tile_height, tile_width = tiles[0].shape[:2]
  columns = columns or math.ceil(math.sqrt(len(tiles)))
  rows = math.ceil(len(tiles) / columns)
  cell_width = max([tile_width] + [text_width(label) for label in labels])
  cell_height = tile_height + line_height + MARGIN
  top = MARGIN + line_height + MARGIN
  picture_width = max(MARGIN + columns * (cell_width + MARGIN),
                      2 * MARGIN + text_width(caption))
  picture = Image.new("RGB", (picture_width, top + rows * cell_height),
                      BACKGROUND)
  draw = ImageDraw.Draw(picture)
  draw.text((MARGIN, MARGIN), caption, fill=TEXT_COLOR, font=font)
  boxes = []
  for index, (tile, label) in enumerate(zip(tiles, labels)):
    row, column = divmod(index, columns)
    left = MARGIN + column * (cell_width + MARGIN)
    tile_top = top + row * cell_height
    picture.paste(Image.fromarray(tile), (left, tile_top))
    draw.text((left, tile_top + tile_height + MARGIN // 2), label,
              fill=TEXT_COLOR, font=font)
    boxes.append((left, tile_top))
  return picture, boxes


def side_by_side(image, models=(), codecs=(), crop=None, zoom=2,
                 target_bpp=None, image_name="image", columns=None):
  """(picture, figures) comparing `models` and classic `codecs` on `image`.

  image: uint8 [H, W, C]; crop: (x, y, w, h) (default detailed_crop); the
  classic codecs aim at `target_bpp` (default: the first model's bpp);
  figures: one dict per entry, in order (see _figure), of the whole image.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3:
    raise ValueError(f"expected a uint8 array [H, W, C], got {image.dtype} "
                     f"with shape {image.shape}")
  if int(zoom) != zoom or zoom < 1:
    raise ValueError(f"zoom must be a positive integer, got {zoom}")
  height, width = image.shape[:2]
  crop = tuple(crop) if crop else detailed_crop(image)
  check_crop(crop, height, width)  # before any coding
  if not target_bpp and codecs and not models:
    raise ValueError("classic codecs need a target bpp or a model to match")
  coded = [code_with_model(model, image) for model in models]
  target_bpp = target_bpp or (coded[0][0]["bpp"] if coded else None)
  coded += [code_with_codec(codec, image, target_bpp) for codec in codecs]
  figures = [figure for figure, _ in coded]
  x, y, crop_width, crop_height = crop
  caption = (f"{image_name}, crop {crop_width}x{crop_height} at ({x}, {y}), "
             f"zoom {zoom}x (nearest neighbour); bpp and PSNR are of the "
             f"whole {width}x{height} image")
  tiles = [zoomed_crop(image, crop, zoom)] + [
      zoomed_crop(decoded, crop, zoom) for _, decoded in coded]
  labels = ["original"] + [tile_label(figure) for figure in figures]
  picture, _ = compose(tiles, labels, caption, columns)
  return picture, figures


def markdown_table(figures):
  """The figures as a Markdown table, one row per entry."""
  lines = ["| Codec | Setting | bpp | PSNR (dB) |", "|---|---|---:|---:|"]
  lines += [f"| {f['name']} | {f['setting_name']} {f['setting']} | "
            f"{f['bpp']:.3f} | {f['psnr_db']:.2f} |" for f in figures]
  return "\n".join(lines)
