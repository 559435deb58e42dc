"""Tests of balle.evaluation.comparison_picture on small generated images."""

import numpy as np
import pytest

from balle.evaluation import baselines
from balle.evaluation import comparison_picture
from balle.evaluation import metrics
from conftest import smooth_image

CROP = (8, 16, 40, 24)  # x, y, w, h
ZOOM = 2


@pytest.fixture(scope="module")
def image():
  return smooth_image(64, 96)


@pytest.fixture(scope="module")
def model(tiny_model):
  return tiny_model  # conftest's frozen model of tiny_model_dir


@pytest.fixture(scope="module")
def picture_and_figures(image, model):
  return comparison_picture.side_by_side(
      image, [model], baselines.get_codecs(["jpeg420", "j2k"]), crop=CROP,
      zoom=ZOOM, target_bpp=1.5, image_name="smooth")


def test_figures_are_of_the_whole_image(image, model, picture_and_figures):
  _, figures = picture_and_figures
  assert [f["name"] for f in figures] == [
      "tiny", "JPEG 4:2:0 (libjpeg-turbo)", "JPEG 2000 9/7 (OpenJPEG)"]
  _, decoded = comparison_picture.code_with_model(model, image)
  assert figures[0]["psnr_db"] == pytest.approx(
      metrics.psnr_rgb(image, decoded))
  assert figures[2]["setting"] == 1.5
  assert figures[2]["bpp"] == pytest.approx(1.5, rel=0.3)


def test_labels_carry_bpp_and_psnr(picture_and_figures):
  _, figures = picture_and_figures
  for figure in figures:
    label = comparison_picture.tile_label(figure)
    assert label.startswith(figure["name"] + ": ")
    assert f"{figure['bpp']:.3f} bpp" in label
    assert f"{figure['psnr_db']:.2f} dB" in label
  table = comparison_picture.markdown_table(figures)
  assert len(table.splitlines()) == 2 + len(figures)
  assert f"{figures[1]['bpp']:.3f}" in table


def test_grid_has_the_original_then_one_tile_per_entry(image):
  jpeg = baselines.get_codecs(["jpeg420"])[0]
  _, decoded = comparison_picture.code_with_codec(jpeg, image, 2.0)
  tiles = [comparison_picture.zoomed_crop(array, CROP, ZOOM)
           for array in (image, decoded, image)]
  picture, boxes = comparison_picture.compose(
      tiles, ["original", "jpeg", "third"], "caption")
  assert len(boxes) == 3
  pixels = np.asarray(picture)
  height, width = CROP[3] * ZOOM, CROP[2] * ZOOM
  for tile, (left, top) in zip(tiles, boxes):
    np.testing.assert_array_equal(
        pixels[top:top + height, left:left + width], tile)
  assert not np.array_equal(tiles[0], tiles[1])  # JPEG changed the crop
  # Nearest neighbour: every source pixel is a ZOOM x ZOOM block.
  np.testing.assert_array_equal(tiles[0][::ZOOM, ::ZOOM],
                                image[16:40, 8:48])
  np.testing.assert_array_equal(tiles[0][1::ZOOM, 1::ZOOM],
                                image[16:40, 8:48])


def test_side_by_side_picture_holds_every_tile(picture_and_figures):
  picture, figures = picture_and_figures
  # Two columns (ceil(sqrt(4))), two rows of zoomed tiles and labels.
  assert picture.width >= 2 * CROP[2] * ZOOM
  assert picture.height >= 2 * CROP[3] * ZOOM
  assert len(figures) == 3


def test_jpeg_quality_is_closer_to_the_target_than_its_neighbours(image):
  jpeg = baselines.get_codecs(["jpeg420"])[0]
  target_bpp = 1.2
  quality, data = comparison_picture.quality_for_bpp(jpeg, image, target_bpp)

  def distance(q):
    size = len(jpeg.encode(image, q))
    return abs(metrics.bits_per_pixel(size, 64, 96) - target_bpp)

  assert 1 < quality < 95
  assert data == jpeg.encode(image, quality)
  assert distance(quality) <= distance(quality - 1)
  assert distance(quality) <= distance(quality + 1)
  # A target beyond reach gets the end of the range.
  assert comparison_picture.quality_for_bpp(jpeg, image, 100.0)[0] == 95
  assert comparison_picture.quality_for_bpp(jpeg, image, 0.0)[0] == 1


@pytest.mark.parametrize("crop", [(60, 16, 40, 24), (-1, 0, 8, 8),
                                  (0, 50, 8, 16), (0, 0, 0, 8)])
def test_crop_outside_the_image_is_a_clear_error(image, crop):
  with pytest.raises(ValueError, match="crop"):
    comparison_picture.side_by_side(
        image, [], baselines.get_codecs(["jpeg420"]), crop=crop,
        target_bpp=1.0)


def test_default_crop_finds_the_detail():
  image = np.full((96, 128, 3), 120, np.uint8)
  checkers = np.indices((32, 40)).sum(0) % 2 * 255
  image[40:72, 80:120] = checkers[..., None].astype(np.uint8)
  x, y, width, height = comparison_picture.detailed_crop(
      image, size=(48, 40), stride=4)
  assert (width, height) == (48, 40)
  assert x <= 80 and x + width >= 120 and y <= 40 and y + height >= 72
  # A crop larger than the image is clipped to it.
  assert comparison_picture.detailed_crop(image, size=(500, 500)) == (
      0, 0, 128, 96)
