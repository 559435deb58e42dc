"""Tests of balle.evaluation.rd_curves: interpolation, tables, plots."""

import math
import os

import numpy as np
import pytest
from PIL import Image

from balle.evaluation import baselines
from balle.evaluation import rd_curves
from balle.evaluation import reference_curves
from conftest import log_curve

# The Kodak report's choices (experiments/kodak.py), as a caller passes them.
PUBLISHED_KEYS = ("balle2017-mse", "balle2018-mse", "jpeg420-published",
                  "j2k-opj5-published", "bpg444-published")
ANCHORS = (
    rd_curves.Anchor("j2k", rd_curves.MEASURED, "JPEG 2000 9/7 (measured)"),
    rd_curves.Anchor("balle2017", rd_curves.PUBLISHED,
                     "Ballé 2017 (published)", metrics=("psnr", "ms_ssim_db")),
)


def test_interpolation():
  points = ((0.5, 30.0), (0.1, 25.0), (0.7, 29.0), (1.0, 33.0))
  assert rd_curves.value_at(points, 0.3) == pytest.approx(27.5)
  assert math.isnan(rd_curves.value_at(points, 0.05))
  assert math.isnan(rd_curves.value_at(points, 1.5))
  assert math.isnan(rd_curves.value_at((), 0.5))


def test_value_at_log_bpp_is_linear_in_log_rate():
  points = ((1.0, 36.0), (0.25, 30.0), (0.5, 33.0))
  # Halfway between 0.25 and 0.5 in log rate is sqrt(0.125).
  assert rd_curves.value_at_log_bpp(points, math.sqrt(0.125)) == (
      pytest.approx(31.5))
  assert rd_curves.value_at_log_bpp(points, 0.5) == pytest.approx(33.0)
  assert rd_curves.value_at_log_bpp(points, 1.0) == pytest.approx(36.0)
  # 0.75 bpp: 33 + 3 * log2(1.5), not the linear-in-bpp 34.5.
  assert rd_curves.value_at_log_bpp(points, 0.75) == pytest.approx(
      33.0 + 3.0 * math.log2(1.5))
  for outside in (0.2, 1.01, 0.0, -1.0):
    assert math.isnan(rd_curves.value_at_log_bpp(points, outside))
  assert math.isnan(rd_curves.value_at_log_bpp((), 0.5))


def _published():
  return rd_curves.published_curves(PUBLISHED_KEYS)


def _curves():
  model = rd_curves.Curve("Model", rd_curves.MODEL,
                          log_curve([0.2, 0.4, 0.8, 1.6], 0.7),
                          ((0.2, 0.9), (0.4, 0.95), (0.8, 0.98), (1.6, 0.99)))
  j2k = rd_curves.Curve("J2K", rd_curves.MEASURED,
                        log_curve([0.1, 0.3, 0.6, 1.2, 2.0]),
                        ((0.1, 0.85), (0.3, 0.93), (0.6, 0.96), (1.2, 0.98),
                       (2.0, 0.99)), family="j2k")
  return [model, j2k] + _published()


def test_markdown_table():
  table = rd_curves.markdown_table(_curves(), ANCHORS)
  lines = table.splitlines()
  assert lines[0] == (
      "| Curve | Kind | PSNR @ 0.25 bpp (dB) | PSNR @ 0.5 bpp (dB) | "
      "PSNR @ 1 bpp (dB) | BD-rate vs JPEG 2000 9/7 (measured), PSNR | "
      "BD-rate vs Ballé 2017 (published), PSNR | "
      "BD-rate vs Ballé 2017 (published), MS-SSIM dB |")
  model_row = next(l for l in lines if l.startswith("| Model |"))
  cells = [c.strip() for c in model_row.strip("|").split("|")]
  assert cells[1] == "model"
  # PSNR @ 0.25 bpp interpolated; BD-rate vs J2K = 1/0.7 - 1 = -30%.
  assert float(cells[2]) == pytest.approx(
      rd_curves.value_at(_curves()[0].psnr_rgb, 0.25), abs=0.01)
  assert cells[5].startswith("-30.0%")  # "*" marks partial overlap
  j2k_row = next(l for l in lines if l.startswith("| J2K |"))
  assert "+0.0%" in j2k_row
  # Ballé 2017's own row: 0% against itself.
  balle_row = next(l for l in lines if l.startswith("| Ballé 2017"))
  assert balle_row.count("+0.0%") == 2


def test_markdown_table_takes_its_anchors():
  curves = _curves()
  model_anchor = rd_curves.Anchor("", rd_curves.MODEL, "my model",
                                  ("ms_ssim_db",))
  missing = rd_curves.Anchor("webp", rd_curves.MEASURED, "WebP (measured)")
  lines = rd_curves.markdown_table(curves, (model_anchor, missing)).splitlines()
  assert lines[0].endswith("| BD-rate vs my model, MS-SSIM dB | "
                           "BD-rate vs WebP (measured), PSNR |")
  model_row = next(l for l in lines if l.startswith("| Model |"))
  cells = [c.strip() for c in model_row.strip("|").split("|")]
  assert cells[5] == "+0.0%" and cells[6] == ""  # no WebP curve: blank
  without = rd_curves.markdown_table(curves, ()).splitlines()
  assert without[0].endswith("| PSNR @ 1 bpp (dB) |")


def test_blank_cells_when_out_of_range():
  short = rd_curves.Curve("Short", rd_curves.MEASURED,
                          ((0.4, 30.0), (0.6, 31.0)), ())
  row = next(l for l in rd_curves.markdown_table([short],
                                                 ANCHORS).splitlines()
             if l.startswith("| Short"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[2] == "" and cells[3] == "30.50" and cells[4] == ""


def test_write_report(tmp_path):
  paths = rd_curves.write_report(_curves(), str(tmp_path), "Synthetic",
                                 ANCHORS)
  names = ("rd_psnr.png", "rd_psnr.pdf", "rd_ms_ssim.png", "rd_ms_ssim.pdf",
           "rd_table.md")
  for name in names:
    path = tmp_path / name
    assert str(path) in paths and path.stat().st_size > 1000
  with Image.open(tmp_path / "rd_psnr.png") as image:
    assert image.size[0] > 800
  text = (tmp_path / "rd_table.md").read_text()
  assert text == rd_curves.report_text(_curves(), "Synthetic", ANCHORS)
  # The sources of the plotted published curves, in plotting order.
  cited = [l for l in text.splitlines() if l.startswith("- ")]
  assert cited == [f"- {c.label}: {c.source}" for c in _published()]
  assert all("tensorflow-compression" in l for l in cited)
  # A rerun replaces the report through atomic writes: no temporary files.
  rd_curves.write_report(_curves()[:1], str(tmp_path), "Again", ())
  assert sorted(os.listdir(tmp_path)) == sorted(names)
  assert (tmp_path / "rd_table.md").read_text().startswith("# Again\n")


def test_baselines_and_plot_end_to_end(tmp_path):
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:176, 0:176]
  images = []
  for index in range(2):
    base = np.stack([x + 30 * index, y, x + y], -1) % 256
    images.append((f"i{index}.png", np.clip(
        base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)))
  written = baselines.run(baselines.get_codecs(["jpeg420", "j2k"]), images,
                          "set", str(tmp_path / "baselines"), quick=True)
  curves = rd_curves.load_curves([str(tmp_path / "baselines")])
  assert sorted(c.family for c in curves) == ["j2k", "jpeg420"]
  assert all(len(c.psnr_rgb) == 3 for c in curves)
  curves += _published()
  rd_curves.write_report(curves, str(tmp_path / "report"), "Tiny", ANCHORS)
  table = (tmp_path / "report" / "rd_table.md").read_text()
  assert "JPEG 4:2:0 (libjpeg-turbo)" in table
  assert os.path.exists(tmp_path / "report" / "rd_ms_ssim.pdf")
  assert len(written) == 4


def test_consistency_table_compares_same_codec():
  published = reference_curves.load("j2k-opj5-published")
  measured = rd_curves.Curve("OpenJPEG 5/3", rd_curves.MEASURED,
                             tuple(published.psnr_rgb),
                             tuple(published.ms_ssim_rgb), family="j2k53")
  table = rd_curves.consistency_table([measured] + _published())
  row = next(l for l in table.splitlines() if l.startswith("| OpenJPEG 5/3"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[1] == published.label
  assert cells[4] == "0.00" and cells[5] == "+0.0%"
  assert rd_curves.consistency_table(_published()) == ""
  # Published curves that are not plotted are still used (WebP here).
  webp = rd_curves.Curve("Mine", rd_curves.MEASURED, ((0.2, 27.0), (0.8, 34.0)),
                         (), family="webp")
  assert "| Mine | WebP, published |" in rd_curves.consistency_table([webp])


def test_operating_points_table_lists_single_model_points():
  balle = reference_curves.load("balle2017-mse")
  bpp = 0.5
  published_psnr = rd_curves.value_at(tuple(balle.psnr_rgb), bpp)
  single = rd_curves.Curve("One model", rd_curves.MODEL,
                           ((bpp, published_psnr - 1.5),), ((bpp, 0.99),))
  table = rd_curves.operating_points_table(
      [single] + _published(), ANCHORS[1:])
  row = next(l for l in table.splitlines() if l.startswith("| One model"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[1] == "0.5000" and cells[3] == "20.00"  # MS-SSIM .99 = 20 dB
  assert cells[4] == f"{published_psnr:.2f}" and cells[5] == "-1.50"
  assert rd_curves.operating_points_table(_published(), ANCHORS) == ""
