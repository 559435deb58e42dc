"""The shipped models load, are found by id, and code a photo-like image."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from balle import pretrained
from balle.coding import codec
from balle.evaluation import metrics
from conftest import REPOSITORY
from conftest import smooth_image


def test_default_model_is_shipped():
  assert pretrained.DEFAULT_MODEL in pretrained.list_models()
  assert pretrained.indexes_of(b"\0" * 8) is None


@pytest.mark.parametrize("name", pretrained.list_models())
def test_shipped_model_codes_an_image(name):
  model = pretrained.resolve(name)
  assert model.config.name == name
  assert pretrained.find_by_id(model.model_id) == name
  with open(os.path.join(pretrained.model_directory(name), "config.json")) as f:
    assert json.load(f)["model_id"] == model.model_id.hex()
  assert pretrained.indexes_of(model.model_id) == "exact"
  if model.ARCHITECTURE == "bmshj2018":  # made exact after it was shipped
    assert pretrained.find_by_id(model.float_index_model_id) == name
    assert pretrained.indexes_of(model.float_index_model_id) == "float"
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

  def ship():
    return subprocess.run(
        [sys.executable, "-m", "experiments.ship_model",
         f"--model_dir={trained}", f"--destination={destination}"],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=900,
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


def test_qualities_follow_the_ladder_lambdas(monkeypatch):
  assert pretrained.quality_of_lambda(0.0130) == 4
  assert pretrained.quality_of_lambda(0.18) == 8
  assert pretrained.quality_of_lambda(0.0450) is None
  for quality, lmbda in enumerate(pretrained.QUALITY_LAMBDAS, start=1):
    name = pretrained.model_for_quality(quality)
    assert pretrained.describe(name)["lmbda"] == lmbda
  shipped = pretrained.list_models()
  monkeypatch.setattr(pretrained, "list_models",
                      lambda: [n for n in shipped if "0.0067" not in n])
  with pytest.raises(KeyError, match="no shipped bls2017 model of quality 3 "
                     r"\(lambda 0.0067\); shipped bls2017 qualities: 1, 2, 4, "
                     "5, 6"):
    pretrained.model_for_quality(3)
  with pytest.raises(KeyError, match="quality must be 1..8, got 9"):
    pretrained.model_for_quality(9)
  with pytest.raises(KeyError, match="no shipped bmshj2018 model of quality "
                     r"3 \(lambda 0.0067\); shipped bmshj2018 qualities: 1, "
                     "5, 6'"):
    pretrained.model_for_quality(3, family="bmshj2018")
  monkeypatch.setattr(pretrained, "list_models", lambda: shipped[:8])
  with pytest.raises(KeyError, match="shipped bmshj2018 qualities: none"):
    pretrained.model_for_quality(3, family="bmshj2018")


def test_quality_picks_the_model_of_its_family(tmp_path, monkeypatch,
                                               tiny_model_dir):
  """A hyperprior of the same lambda beside a factorized model: --quality
  takes the family's own."""
  for name, architecture in (("bls2017-mse-0.0250", "bls2017"),
                             ("bmshj2018-mse-0.0250", "bmshj2018")):
    shutil.copytree(tiny_model_dir, tmp_path / name)
    path = tmp_path / name / "config.json"
    config = json.loads(path.read_text())
    config["model"].update(lmbda=0.025, architecture=architecture,
                           latent_channels=12)
    path.write_text(json.dumps(config))
  monkeypatch.setattr(pretrained, "_FOLDER", str(tmp_path))
  assert pretrained.model_for_quality(5) == "bls2017-mse-0.0250"
  assert pretrained.model_for_quality(5, "bmshj2018") == "bmshj2018-mse-0.0250"
  info = pretrained.describe("bmshj2018-mse-0.0250")
  assert info["architecture"] == "bmshj2018" and info["latent_channels"] == 12
  assert pretrained.architecture_of("bmshj2018-mse-0.0250") == "bmshj2018"
  assert pretrained.architecture_of(str(tmp_path / "bls2017-mse-0.0250")) == (
      "bls2017")


def test_higher_qualities_spend_more_bits_for_more_fidelity():
  """The eight shipped rates, as measured when shipped (Kodak) and on a
  photo-like image here: bpp and PSNR both rise with the quality."""
  image = smooth_image(128, 192)
  kodak, here = [], []
  for quality in range(1, len(pretrained.QUALITY_LAMBDAS) + 1):
    name = pretrained.model_for_quality(quality)
    kodak.append(pretrained.describe(name)["measured"]["kodak"])
    model = pretrained.resolve(name)
    data = codec.compress_image(model, image)
    here.append((metrics.bits_per_pixel(len(data), 128, 192),
                 metrics.psnr_rgb(image, codec.decompress_image(data, model))))
  for figures in (here, [(k["bpp"], k["psnr_db"]) for k in kodak]):
    rates, psnrs = zip(*figures)
    assert list(rates) == sorted(rates) and len(set(rates)) == len(rates)
    assert list(psnrs) == sorted(psnrs), figures
