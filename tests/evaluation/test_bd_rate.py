"""Tests of balle.evaluation.bd_rate."""

import math

import pytest

from balle.evaluation import bd_rate
from conftest import log_curve


def test_bd_rate_of_a_rate_scaled_curve():
  anchor = log_curve([0.1, 0.25, 0.5, 1.0, 2.0])
  # Same quality at 80% of the rate, sampled at other points.
  test = log_curve([0.09, 0.2, 0.45, 0.9, 1.5], factor=0.8)
  value, overlap = bd_rate.bd_rate(anchor, test)
  assert value == pytest.approx(-20.0, abs=1e-6)
  assert overlap > 0.75
  value, _ = bd_rate.bd_rate(test, anchor)
  assert value == pytest.approx(25.0, abs=1e-6)
  value, _ = bd_rate.bd_rate(anchor, anchor)
  assert value == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_without_overlap_or_points_is_nan():
  anchor = ((0.1, 20.0), (0.2, 22.0))
  assert math.isnan(bd_rate.bd_rate(anchor, ((1.0, 40.0), (2.0, 42.0)))[0])
  assert math.isnan(bd_rate.bd_rate(anchor, ((1.0, 21.0),))[0])


def test_monotone_points():
  points = ((0.5, 30.0), (0.1, 25.0), (0.7, 29.0), (1.0, 33.0))
  assert bd_rate.monotone_points(points) == ((0.1, 25.0), (0.5, 30.0),
                                             (1.0, 33.0))
