"""Tests of balle/campaign/records.py: a test set's figures and gaps."""

import math

import pytest

from balle.campaign import records as campaign_records
from balle.evaluation import reference_curves
from conftest import results_document

GAP_BALLE2017 = "psnr_gap_balle2017_db"


_J2K = results_document([0.25, 1.0], [30.0, 34.0], codec="j2k")
_PUBLISHED = reference_curves.PublishedCurve(
    key="fake", family="balle2017", label="fake", citation="-", source="-",
    psnr_rgb=((0.25, 31.0), (1.0, 35.0)), ms_ssim_rgb=())


def test_projection_solves_the_log_linear_learning_curve():
  points = [(g, -2.0 + 0.25 * math.log2(g)) for g in (4.0, 8.0, 16.0)]
  fit = campaign_records.projection(points)
  assert fit["slope_db_per_doubling"] == pytest.approx(0.25)
  assert fit["gpix_at_target"] == pytest.approx(256.0)
  assert campaign_records.projection(points, target_db=-1.0)[
      "gpix_at_target"] == pytest.approx(16.0)
  falling = [(4.0, -1.0), (8.0, -1.2)]
  assert campaign_records.projection(falling)["gpix_at_target"] is None
  assert campaign_records.projection([(4.0, -1.0)]) is None
  assert campaign_records.projection([(4.0, -1.0), (4.0, -0.9)]) is None


def test_figures_of_test_set_gaps_at_the_same_bpp():
  figures = campaign_records.figures_of_test_set(
      results_document([0.5], [31.0]), j2k=_J2K, published=_PUBLISHED)
  # 0.5 bpp is halfway in log(bpp) between 0.25 and 1.0.
  assert figures == {"bpp": 0.5, "psnr_db": 31.0, "ms_ssim": 0.97,
                     campaign_records.GAP_J2K: pytest.approx(-1.0),
                     GAP_BALLE2017: pytest.approx(-2.0)}
  outside = campaign_records.figures_of_test_set(results_document([2.0], [40.0]),
                                             j2k=_J2K)
  assert outside[campaign_records.GAP_J2K] is None
  assert GAP_BALLE2017 not in outside
  with pytest.raises(ValueError, match="other images"):
    campaign_records.figures_of_test_set(results_document([0.5], [31.0], "set-b"),
                                     j2k=_J2K)
  assert campaign_records.published_curve().family == "balle2017"


def test_each_family_has_its_published_curve():
  curve = campaign_records.published_curve("bmshj2018")
  assert curve.family == "balle2018"
  assert campaign_records.published_title(curve) == "Ballé 2018"
  published = reference_curves.PublishedCurve(
      key="fake", family="balle2018", label="fake", citation="-",
      source="-", psnr_rgb=((0.25, 31.0), (1.0, 35.0)), ms_ssim_rgb=())
  figures = campaign_records.figures_of_test_set(results_document([0.5], [31.0]),
                                                 published=published)
  assert figures["psnr_gap_balle2018_db"] == pytest.approx(-2.0)
  with pytest.raises(ValueError, match="no published curve"):
    campaign_records.published_curve("nonesuch")
