"""Tests of balle.evaluation.baselines: every available Pillow codec, rates,
cache."""

import dataclasses
import json
import os

import numpy as np
import pytest

from balle import evaluation
from balle.evaluation import baselines
from balle.evaluation import metrics


def _image(height=176, width=192, channels=3, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  base = np.stack([x * 1.2, y * 1.4, (x + y) * 0.6], -1)[..., :channels] % 256
  return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


AVAILABLE = [c for c in baselines.CODECS if c.available()]


@pytest.mark.parametrize("codec", AVAILABLE, ids=lambda c: c.name)
@pytest.mark.parametrize("channels", [3, 1])
def test_codec_round_trip(codec, channels):
  image = _image(channels=channels)
  low, high = codec.quick_settings[0], codec.quick_settings[-1]
  sizes = []
  for setting in (low, high):
    data = codec.encode(image, setting)
    decoded = baselines.decode(data, channels)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert 15 < metrics.psnr_rgb(image, decoded) < 60
    sizes.append(len(data))
  assert sizes[0] < sizes[1]  # higher setting, more bytes


def test_expected_codecs_available_with_this_pillow():
  names = {c.name for c in AVAILABLE}
  assert {"jpeg420", "jpeg444", "j2k", "j2k53", "webp"} <= names


@pytest.mark.parametrize("name", ["j2k", "j2k53"])
def test_jpeg2000_meets_rate_targets(name):
  codec = baselines.CODECS_BY_NAME[name]
  image = _image(256, 256)
  for target_bpp in (0.25, 1.0):
    data = codec.encode(image, target_bpp)
    bpp = metrics.bits_per_pixel(len(data), 256, 256)
    assert bpp == pytest.approx(target_bpp, rel=0.1)
    assert data[:4] == b"\xff\x4f\xff\x51"  # raw codestream (SOC, SIZ)


def test_jpeg_subsampling_differs():
  image = _image()
  jpeg420 = baselines.CODECS_BY_NAME["jpeg420"].encode(image, 50)
  jpeg444 = baselines.CODECS_BY_NAME["jpeg444"].encode(image, 50)
  assert len(jpeg420) < len(jpeg444)


def test_cache_is_used_on_rerun(tmp_path):
  codec = baselines.CODECS_BY_NAME["jpeg420"]
  images = [("a.png", _image(seed=0)), ("b.png", _image(seed=1))]
  cache_dir = str(tmp_path / "cache")
  first = baselines.measure_codec(codec, images, (20, 60), cache_dir, "set1")
  assert len(first) == 4 and len(os.listdir(cache_dir)) == 1

  def fail(image, setting):
    raise AssertionError("cached codec was run again")
  cached_codec = dataclasses.replace(codec, encode=fail)
  second = baselines.measure_codec(cached_codec, images, (20, 60), cache_dir,
                                   "set1")
  assert [r.bpp for r in second] == [r.bpp for r in first]
  assert [r.psnr_rgb for r in second] == pytest.approx(
      [r.psnr_rgb for r in first])
  # Another image set, other settings or library version: other keys.
  assert baselines.cache_key(codec, (20, 60), "set2") != baselines.cache_key(
      codec, (20, 60), "set1")
  assert baselines.cache_key(codec, (20,), "set1") != baselines.cache_key(
      codec, (20, 60), "set1")
  assert codec.library_version().startswith("pillow-")


def test_run_writes_documents_and_skips_unavailable(tmp_path, monkeypatch):
  images = [("a.png", _image())]
  heic = baselines.CODECS_BY_NAME["heic"]
  monkeypatch.setattr(baselines, "_pillow_heif", lambda: None)
  assert not heic.available()
  codecs = baselines.get_codecs(["jpeg444", "webp", "heic"])
  written = baselines.run(codecs, images, "set", str(tmp_path), quick=True)
  assert sorted(os.path.basename(p) for p in written) == [
      "jpeg444.json", "jpeg444_per_image.csv", "webp.json",
      "webp_per_image.csv"]
  document = evaluation.read_results(str(tmp_path / "webp.json"))
  assert document["kind"] == "measured" and document["codec"] == "webp"
  assert document["settings"] == list(
      baselines.CODECS_BY_NAME["webp"].quick_settings)
  with open(tmp_path / "webp.json") as f:
    assert set(json.load(f)["results"]) == set(evaluation.RESULT_KEYS)
  with pytest.raises(KeyError, match="unknown codec"):
    baselines.get_codecs(["jpeg9000"])
