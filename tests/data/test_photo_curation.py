"""Tests for balle.data.photo_curation."""

import os

import numpy as np
from PIL import Image

from balle.data import photo_curation
from conftest import smooth_image


def _save(path, pixels, **kwargs):
  Image.fromarray(pixels).save(path, **kwargs)
  return str(path)


def test_rejects_grey_small_and_coarse_jpeg(tmp_path):
  config = photo_curation.CurationConfig(min_side=64)
  rgb = smooth_image(80, 96)
  cases = {
      "grey.png": (rgb[..., 0], {}),
      "small.png": (rgb[:40], {}),
      "coarse.jpg": (rgb, {"quality": 75}),
      "fine.jpg": (rgb, {"quality": 98}),
      "lossless.png": (rgb, {}),
  }
  reasons = {}
  for name, (pixels, kwargs) in cases.items():
    with Image.open(_save(tmp_path / name, pixels, **kwargs)) as image:
      reasons[name] = photo_curation.rejection_reason(image, config)
  assert reasons == {"grey.png": "mode L", "small.png": "small",
                     "coarse.jpg": "jpeg quality", "fine.jpg": None,
                     "lossless.png": None}


def test_duplicate_index_finds_exact_and_rescaled_copies():
  index = photo_curation.DuplicateIndex()
  first, other = smooth_image(120, 160, seed=1), smooth_image(120, 160, seed=2)
  index.add(first, "first")
  rescaled = np.asarray(Image.fromarray(first).resize((80, 60),
                                                      Image.LANCZOS))
  assert index.match(first) == ("exact", "first")
  assert index.match(rescaled) == ("near", "first")
  assert index.match(other) is None


def test_curate_copies_small_downsamples_large_and_drops_copies(tmp_path):
  source, output = tmp_path / "source", tmp_path / "output"
  source.mkdir()
  config = photo_curation.CurationConfig(min_side=32, max_pixels=100 * 100,
                                         max_short_side=50)
  _save(source / "a.png", smooth_image(64, 80, seed=3))
  _save(source / "b.tif", smooth_image(64, 72, seed=4))
  _save(source / "big.png", smooth_image(150, 200, seed=5))
  _save(source / "copy.png", smooth_image(64, 80, seed=3))
  files = sorted(str(p) for p in source.iterdir())
  index = photo_curation.DuplicateIndex()
  stats = photo_curation.curate(files, str(source), str(output), index,
                                config, log=lambda message: None)
  assert sorted(os.listdir(output)) == ["a.png", "b.png", "big.png"]
  assert stats["kept"] == 3 and stats["rejected"] == {"exact duplicate": 1}
  with Image.open(output / "big.png") as image:
    assert image.size == (67, 50)
  assert len(index) == 3
