"""Tests of balle.evaluation.reference_curves: the cited data files and their
loader."""

import os

import pytest

from balle.evaluation import rd_curves
from balle.evaluation import reference_curves

# (key, number of points, first (bpp, PSNR dB, MS-SSIM), last point), as
# published; a changed file or a loader that drops a row fails here.
EXPECTED = (
    ("balle2017-mse", 8, (0.119752, 26.775134, 0.903700),
     (1.957564, 40.133996, 0.994965)),
    ("balle2018-mse", 8, (0.115239, 27.106351, 0.907527),
     (1.727503, 40.794920, 0.995267)),
    ("bpg444-published", 36, (0.023857, 23.787652, 0.783939),
     (2.762745, 43.993691, 0.997260)),
    ("compressai-bmshj2018-factorized-mse", 8,
     (0.122623, 26.908787, 0.909989), (1.833272, 39.621305, 0.995105)),
    ("j2k-opj5-published", 27, (0.099912, 25.982922, 0.864516),
     (2.749595, 41.762804, 0.994614)),
    ("jpeg420-published", 93, (0.169711, 21.455203, 0.712071),
     (2.755330, 39.305183, 0.994674)),
    ("webp-published", 96, (0.094243, 24.714260, 0.859949),
     (2.991981, 41.795607, 0.996672)),
)


def test_every_file_is_a_cited_curve():
  assert reference_curves.keys() == [key for key, *_ in EXPECTED]
  for key, count, first, last in EXPECTED:
    curve = reference_curves.load(key)
    assert curve.key == key
    assert curve.label and curve.family and curve.citation
    assert curve.source.startswith(("tensorflow-compression", "CompressAI"))
    assert len(curve.psnr_rgb) == len(curve.ms_ssim_rgb) == count
    for index, (bpp, psnr, ms_ssim) in ((0, first), (-1, last)):
      assert curve.psnr_rgb[index] == (bpp, psnr)
      assert curve.ms_ssim_rgb[index] == (bpp, ms_ssim)


def test_curves_are_sane():
  for curve in reference_curves.load_all():
    for points, low, high in ((curve.psnr_rgb, 15, 50),
                              (curve.ms_ssim_rgb, 0.5, 1.0)):
      rates = [p[0] for p in points]
      assert rates == sorted(rates) and 0 < rates[0] and rates[-1] <= 3
      assert all(low < p[1] < high for p in points)
  # The paper's curve lies above published OpenJPEG at 1 bpp.
  balle = reference_curves.load("balle2017-mse")
  j2k = reference_curves.load("j2k-opj5-published")
  assert (rd_curves.value_at(balle.psnr_rgb, 1.0) >
          rd_curves.value_at(j2k.psnr_rgb, 1.0))


def test_each_number_is_written_once():
  # One row per point: the bpp column is shared by PSNR and MS-SSIM.
  for key in reference_curves.keys():
    path = os.path.join(reference_curves.DATA_FOLDER,
                        key + reference_curves.FILE_SUFFIX)
    with open(path, encoding="utf-8") as f:
      rows = [l for l in f if l.strip() and not l.startswith("#")]
    assert rows[0].split() == list(reference_curves.COLUMNS)
    assert len(rows) - 1 == len(reference_curves.load(key).psnr_rgb)


def test_parse_rejects_malformed_files():
  header = ("# label: L\n# family: f\n# citation: C\n# source: S\n"
            "bpp psnr_rgb_db ms_ssim_rgb\n")
  curve = reference_curves.parse(header + "0.5 30.0 0.95\n", "k")
  assert curve.psnr_rgb == ((0.5, 30.0),) and curve.ms_ssim_rgb == ((0.5,
                                                                     0.95),)
  with pytest.raises(ValueError, match="citation"):
    reference_curves.parse(header.replace("# citation: C\n", "") +
                           "0.5 30.0 0.95\n", "k")
  with pytest.raises(ValueError, match="no points"):
    reference_curves.parse(header, "k")
  with pytest.raises(ValueError, match="line 6"):
    reference_curves.parse(header + "0.5 30.0\n", "k")
  with pytest.raises(ValueError, match="columns"):
    reference_curves.parse(header.replace("ms_ssim_rgb", "ssim") +
                           "0.5 30.0 0.95\n", "k")
  with pytest.raises(KeyError, match="no published curve"):
    reference_curves.load("no-such-curve")
