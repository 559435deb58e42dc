"""Tests of balle.evaluation, the evaluate runner and reproduce_kodak."""

import csv
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from balle.evaluation import measure
from conftest import REPOSITORY
from conftest import frozen_copy



def _image(height, width, seed):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  base = np.stack([x * 1.3 + seed * 40, y * 1.1, (x + y) * 0.5], -1) % 256
  return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _write_images(directory, count=2, height=168, width=176):
  os.makedirs(directory, exist_ok=True)
  for index in range(count):
    Image.fromarray(_image(height, width, index)).save(
        os.path.join(directory, f"img{index}.png"))
  return str(directory)


def _png_codec():
  def encode(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
  decode = lambda data: np.asarray(Image.open(io.BytesIO(data)))
  return encode, decode


def _jpeg_codec(quality):
  def encode(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
  decode = lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  return encode, decode


def test_measure_image_counts_the_whole_file():
  image = _image(170, 180, 0)
  encode, decode = _png_codec()
  result = measure.measure_image("png", 0, "a.png", image, encode, decode)
  assert result.num_bytes == len(encode(image))
  assert result.bpp == pytest.approx(8 * result.num_bytes / (170 * 180))
  assert result.psnr_rgb == math.inf and result.mse_255 == 0
  assert result.ms_ssim_rgb == pytest.approx(1.0, abs=1e-6)
  assert result.encode_time_s > 0 and result.decode_time_s > 0


def test_measure_image_rejects_wrong_shape():
  image = _image(170, 180, 0)
  encode, _ = _png_codec()
  with pytest.raises(ValueError, match="decoded shape"):
    measure.measure_image("bad", 0, "a", image, encode,
                             lambda data: image[:10])


def test_aggregate_averages_per_image_values():
  images = [("a", _image(170, 180, 0)), ("b", _image(170, 180, 1))]
  results = []
  for quality in (90, 20):
    results += measure.measure_setting("jpeg", quality, images,
                                          *_jpeg_codec(quality))
  points = measure.aggregate(results)
  assert [p.setting for p in points] == [20, 90]  # sorted by bpp
  for point in points:
    mine = [r for r in results if r.setting == point.setting]
    assert point.num_images == 2
    assert point.bpp == pytest.approx(np.mean([r.bpp for r in mine]))
    # Mean of per-image PSNRs, not the PSNR of the mean MSE.
    assert point.psnr_rgb == pytest.approx(np.mean([r.psnr_rgb for r in mine]))
    assert point.ms_ssim_db == pytest.approx(
        -10 * math.log10(1 - point.ms_ssim_rgb))


def test_results_document_schema_and_round_trip(tmp_path):
  images = [("a", _image(170, 180, 0))]
  results = []
  for quality in (30, 80):
    results += measure.measure_setting("jpeg", quality, images,
                                          *_jpeg_codec(quality))
  results += measure.measure_setting("jpeg", "lossless", images,
                                        *_png_codec())
  document = measure.results_document(
      "JPEG", "test", measure.aggregate(results), "quality",
      image_set="abc", kind="measured")
  assert set(document) >= {"name", "description", "results"}
  assert set(document["results"]) == set(measure.RESULT_KEYS)
  lengths = {len(v) for v in document["results"].values()}
  assert lengths == {3}
  bpp = document["results"]["bpp"]
  assert bpp == sorted(bpp)
  assert document["settings"] == [30, 80, "lossless"]
  assert document["results"]["psnr-rgb"][-1] is None  # inf -> null
  path = str(tmp_path / "out" / "r.json")
  measure.write_json(path, document)
  with open(path) as f:
    json.loads(f.read())  # strict JSON: no NaN/Infinity literals
  back = measure.read_results(path)
  assert math.isnan(back["results"]["psnr-rgb"][-1])
  assert back["results"]["bpp"] == pytest.approx(bpp)
  csv_path = str(tmp_path / "out" / "r.csv")
  measure.write_csv(csv_path, results)
  with open(csv_path) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3 and tuple(rows[0]) == measure.CSV_FIELDS


def test_read_results_rejects_other_json(tmp_path):
  path = tmp_path / "x.json"
  path.write_text('{"foo": 1}')
  with pytest.raises(ValueError):
    measure.read_results(str(path))


def test_image_files_and_hash(tmp_path):
  directory = _write_images(tmp_path / "images", count=3)
  (tmp_path / "images" / "notes.txt").write_text("not an image")
  Image.fromarray(_image(16, 24, 3)[..., 0]).save(
      tmp_path / "images" / "gray.JPG")
  paths = measure.list_image_files(directory)
  assert [os.path.basename(p) for p in paths] == ["gray.JPG", "img0.png",
                                                  "img1.png", "img2.png"]
  named = measure.named_images(paths)
  assert [name for name, _ in named] == ["gray.JPG", "img0.png", "img1.png",
                                         "img2.png"]
  # Stored channels are kept: gray stays gray.
  assert [image.shape for _, image in named] == [(16, 24, 1)] + [
      (168, 176, 3)] * 3
  np.testing.assert_array_equal(named[1][1], _image(168, 176, 0))
  paths = paths[1:]
  assert len(measure.list_image_files(directory, max_images=2)) == 2
  digest = measure.image_set_hash(paths)
  assert digest == measure.image_set_hash(paths)
  assert digest != measure.image_set_hash(paths[:2])
  with pytest.raises(FileNotFoundError):
    measure.list_image_files(str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_model_dir):
  """Two frozen, untrained 8-filter models with different lambdas."""
  return [frozen_copy(tiny_model_dir,
                      str(tmp_path_factory.mktemp(f"model{lmbda}")),
                      lmbda=lmbda, name="")
          for lmbda in (0.001, 0.01)]


def test_evaluate_models_end_to_end(tmp_path, tiny_models):
  directory = _write_images(tmp_path / "images", count=2)
  paths = measure.list_image_files(directory)
  images = measure.named_images(paths)
  written = measure.evaluate_models(tiny_models, images,
                                       str(tmp_path / "out"), "Tiny models",
                                       image_set="x")
  document = measure.read_results(written[0])
  assert document["kind"] == "model" and document["name"] == "Tiny models"
  assert len(document["results"]["bpp"]) == 2
  configs = document["model_configs"]
  assert [c["name"] for c in configs] == document["settings"]
  assert sorted(c["lmbda"] for c in configs) == [0.001, 0.01]
  assert all(b > 0 for b in document["results"]["bpp"])
  with open(written[1]) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4
  # bpp is the size of the complete .balle file.
  from balle.coding import codec  # pylint: disable=import-outside-toplevel
  model = measure.load_model(tiny_models[0])
  data = codec.compress_image(model, images[0][1])
  row = next(r for r in rows if r["setting"] == model.config.name and
             r["image"] == "img0.png")
  assert int(row["num_bytes"]) == len(data)


def test_evaluate_families_gives_each_family_its_curve(tmp_path, tiny_models,
                                                      hyper_model_dir):
  images = [("img0.png", _image(64, 80, 0))]
  labels = {"bls2017": "Factorized", "bmshj2018": "Hyperprior"}
  out = tmp_path / "out"
  measure.evaluate_families(
      [tiny_models[0], hyper_model_dir, tiny_models[1]], images, str(out),
      labels)
  factorized = measure.read_results(str(out / "bls2017" / "results.json"))
  hyperprior = measure.read_results(
      str(out / "bmshj2018" / "results.json"))
  assert factorized["name"] == "Factorized"
  assert (factorized["codec"], hyperprior["codec"]) == ("bls2017", "bmshj2018")
  assert len(factorized["results"]["bpp"]) == 2
  assert hyperprior["name"] == "Hyperprior"
  assert [c["architecture"] for c in hyperprior["model_configs"]] == [
      "bmshj2018"]
  # One family: the folder itself, as evaluate_models writes it.
  written = measure.evaluate_families([tiny_models[1]], images,
                                         str(tmp_path / "one"), labels)
  assert written[0] == str(tmp_path / "one" / "results.json")
  with pytest.raises(ValueError, match="one curve label for models of 2"):
    measure.evaluate_families([tiny_models[0], hyper_model_dir], images,
                                 str(tmp_path / "x"), labels, one_label=True)
  with pytest.raises(ValueError, match="no curve label .*'bmshj2018'"):
    measure.evaluate_families([hyper_model_dir], images,
                                 str(tmp_path / "y"), {"bls2017": "F"})


def test_spread_per_family_keeps_both_ends(monkeypatch):
  monkeypatch.setattr(measure.pretrained, "architecture_of",
                      lambda name: name.split("-")[0])
  names = [f"a-{q}" for q in range(1, 9)] + ["b-1", "b-2"]
  assert measure.spread_per_family(names, 3) == ["a-1", "a-5", "a-8",
                                                    "b-1", "b-2"]
  assert measure.spread_per_family(names, 1) == ["a-1", "b-1"]


def _run(module, *args):
  return subprocess.run(
      [sys.executable, "-m", module, *args], cwd=REPOSITORY,
      capture_output=True, text=True, timeout=900, check=False)


def test_reproduce_kodak_quick_cli(tmp_path, tiny_models):
  directory = _write_images(tmp_path / "images", count=2)
  out = tmp_path / "out"
  process = _run("experiments.reproduce_kodak", f"--images={directory}",
                 f"--output_dir={out}", "--quick", "--codecs=jpeg420,j2k",
                 f"--models={tiny_models[0]}")
  assert process.returncode == 0, process.stderr[-2000:]
  for name in ("rd_psnr.png", "rd_psnr.pdf", "rd_ms_ssim.png",
               "rd_table.md", "models/results.json",
               "baselines/jpeg420.json", "baselines/j2k.json"):
    assert (out / name).exists(), name
  assert "JPEG 2000 9/7" in (out / "rd_table.md").read_text()


def test_reproduce_kodak_cli_offline_exits_with_message(tmp_path):
  process = _run("experiments.reproduce_kodak",
                 f"--images={tmp_path / 'none'}", "--nodownload",
                 f"--output_dir={tmp_path / 'out'}")
  assert process.returncode == 1
  assert "--images" in process.stderr.strip().splitlines()[-1]


def test_evaluate_baselines_and_plot_clis(tmp_path, tiny_models):
  directory = _write_images(tmp_path / "images", count=1)
  process = _run("experiments.evaluate", f"--models={tiny_models[1]}",
                 f"--images={directory}", f"--output_dir={tmp_path / 'm'}")
  assert process.returncode == 0, process.stderr[-2000:]
  process = _run("experiments.baselines", f"--images={directory}",
                 f"--output_dir={tmp_path / 'b'}", "--codecs=webp",
                 "--quick")
  assert process.returncode == 0, process.stderr[-2000:]
  process = _run("experiments.plot_rd",
                 f"--results={tmp_path / 'm'},{tmp_path / 'b'}",
                 f"--output_dir={tmp_path / 'p'}", "--references=bpg444-published")
  assert process.returncode == 0, process.stderr[-2000:]
  table = (tmp_path / "p" / "rd_table.md").read_text()
  assert "WebP (libwebp)" in table and "BPG 4:4:4" in table
  assert "Ballé 2017 factorized prior (this project)" in table
