"""The shipped models load, are found by id, and code a photo-like image."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from balle import codec, metrics, pretrained
from conftest import smooth_image


def test_default_model_is_shipped():
  assert pretrained.DEFAULT_MODEL in pretrained.list_models()


@pytest.mark.parametrize("name", pretrained.list_models())
def test_shipped_model_codes_an_image(name):
  model = pretrained.resolve(name)
  assert model.config.name == name
  assert pretrained.find_by_id(model.model_id) == name
  with open(os.path.join(pretrained.model_directory(name), "config.json")) as f:
    assert json.load(f)["model_id"] == model.model_id.hex()
  image = smooth_image(96, 128)
  data = codec.compress_image(model, image)
  decoded = codec.decompress_image(data, model)
  # A trained model reconstructs far better than an untrained one (~6 dB).
  assert metrics.psnr_rgb(image, decoded) > 20
  assert metrics.bits_per_pixel(len(data), 96, 128) < 4


def test_unknown_names_are_refused():
  with pytest.raises(KeyError, match="no shipped model"):
    pretrained.model_directory("no-such-model")
  assert pretrained.find_by_id(b"\x00" * 8) is None


def test_tiny_images_keep_their_color():
  # Edge replication before g_a: a 1x1 pixel is coded as a flat 16x16 patch
  # (with the convolutions' zero padding alone these came back at 6-7 dB).
  model = pretrained.resolve()
  for pixel in ([200, 10, 30], [90, 160, 220]):
    image = np.array([[pixel]], dtype=np.uint8)
    decoded = codec.decompress_image(codec.compress_image(model, image), model)
    assert metrics.psnr_rgb(image, decoded) > 20


def test_ship_model_writes_a_compact_model_where_asked(tiny_model_dir,
                                                      tmp_path):
  trained = tmp_path / "final"
  trained.mkdir()
  for name in ("config.json", "weights.npz"):
    (trained / name).write_bytes(open(os.path.join(tiny_model_dir, name),
                                      "rb").read())
  (trained / "recipe.json").write_text('{"lmbda": 0.01}')
  destination = tmp_path / "shipped"
  repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def ship():
    return subprocess.run(
        [sys.executable, "-m", "experiments.ship_model",
         f"--model_dir={trained}", f"--destination={destination}"],
        cwd=repository, capture_output=True, text=True, timeout=240,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), check=False)

  process = ship()
  assert process.returncode == 0, process.stderr[-2000:]
  target = destination / "tiny"
  assert process.stdout.strip() == str(target)
  assert sorted(os.listdir(target)) == ["config.json", "recipe.json",
                                        "weights.npz"]
  assert (target / "recipe.json").read_text() == '{"lmbda": 0.01}'
  # float16 weights: fewer bytes than the trained model's.
  assert (os.path.getsize(target / "weights.npz") <
          os.path.getsize(trained / "weights.npz"))
  process = ship()  # never replaced without --overwrite
  assert process.returncode != 0 and "FileExistsError" in process.stderr
  assert not hasattr(pretrained, "ship")  # the registry only reads


def test_qualities_follow_the_ladder_lambdas():
  assert pretrained.quality_of_lambda(0.0130) == 4
  assert pretrained.quality_of_lambda(0.18) == 8
  assert pretrained.quality_of_lambda(0.0450) is None
  shipped = {pretrained.describe(n)["quality"]: n
             for n in pretrained.list_models()}
  for quality, name in shipped.items():
    if quality is not None:
      assert pretrained.model_for_quality(quality) == name
  missing = [q for q in range(1, 9) if q not in shipped]
  for quality in missing:
    with pytest.raises(KeyError, match=f"no shipped model of quality "
                       f"{quality}.*shipped qualities"):
      pretrained.model_for_quality(quality)
  with pytest.raises(KeyError, match="quality must be 1..8, got 9"):
    pretrained.model_for_quality(9)


def test_describe_reads_measured_figures(monkeypatch, tmp_path, tiny_model_dir):
  folder = tmp_path / "bls2017-mse-0.0250"
  folder.mkdir()
  for name in ("config.json", "weights.npz"):
    (folder / name).write_bytes(open(os.path.join(tiny_model_dir, name),
                                     "rb").read())
  monkeypatch.setattr(pretrained, "_FOLDER", str(tmp_path))
  info = pretrained.describe("bls2017-mse-0.0250")
  assert info["measured"] == {} and info["num_filters"] == 8
  kodak = {"bpp": 0.5, "psnr_db": 31.25, "ms_ssim": 0.975}
  (folder / pretrained.MEASURED_FILE).write_text(json.dumps({"kodak": kodak}))
  assert pretrained.describe("bls2017-mse-0.0250")["measured"]["kodak"] == kodak
