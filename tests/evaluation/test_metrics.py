"""Tests of balle.evaluation.metrics against values known in closed form."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from balle.evaluation import metrics


def _image(height=176, width=184, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  smooth = np.stack([x * 1.1, y * 1.3, (x + y) * 0.6], axis=-1) % 256
  return np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(
      np.uint8)


def test_identical_images():
  image = _image()
  assert metrics.mse_255(image, image) == 0
  assert metrics.psnr_rgb(image, image) == math.inf
  assert metrics.ms_ssim(image, image) == pytest.approx(1.0, abs=1e-6)
  assert metrics.ms_ssim_db(1.0) == math.inf


def test_psnr_of_known_mse():
  original = np.full((32, 40, 3), 100, np.uint8)
  shifted = original + np.uint8(5)  # MSE 25 everywhere
  assert metrics.mse_255(original, shifted) == 25.0
  assert metrics.psnr_rgb(original, shifted) == pytest.approx(
      10 * math.log10(255**2 / 25), abs=1e-4)
  # One channel off by 6: the MSE is over all channels, 36 / 3 = 12.
  one_channel = original.copy()
  one_channel[..., 1] += 6
  assert metrics.mse_255(original, one_channel) == 12.0
  assert metrics.psnr_rgb(original, one_channel) == pytest.approx(
      10 * math.log10(255**2 / 12), abs=1e-4)


def test_psnr_of_jpeg_matches_numpy(tmp_path):
  original = _image()
  path = tmp_path / "image.jpg"
  Image.fromarray(original).save(path, quality=40)
  decoded = np.asarray(Image.open(path).convert("RGB"))
  difference = original.astype(np.float64) - decoded.astype(np.float64)
  expected = 10 * np.log10(255.0**2 / np.mean(difference**2))
  assert 20 < expected < 45
  assert metrics.psnr_rgb(original, decoded) == pytest.approx(expected,
                                                              abs=1e-3)
  ms_ssim = metrics.ms_ssim(original, decoded)
  assert 0.5 < ms_ssim < 1.0
  assert metrics.ms_ssim_db(ms_ssim) == pytest.approx(
      -10 * math.log10(1 - ms_ssim))


def test_ms_ssim_decreases_with_noise_and_handles_gray():
  original = _image()
  rng = np.random.default_rng(1)
  values = []
  for sigma in (2, 8, 32):
    noisy = np.clip(original + rng.normal(0, sigma, original.shape), 0, 255)
    values.append(metrics.ms_ssim(original, noisy.astype(np.uint8)))
  assert values[0] > values[1] > values[2]
  gray = original[..., :1]
  assert metrics.ms_ssim(gray, gray) == pytest.approx(1.0, abs=1e-5)  # float32


def test_ms_ssim_small_images_are_nan_with_note():
  size = metrics.MS_SSIM_MIN_SIZE
  assert size == 161
  small = _image(size - 1, 300)
  assert math.isnan(metrics.ms_ssim(small, small))
  assert math.isnan(metrics.ms_ssim_db(math.nan))
  assert "161" in metrics.ms_ssim_note(size - 1, 300)
  assert metrics.ms_ssim_note(size, size) == ""
  just_enough = _image(size, size)
  assert metrics.ms_ssim(just_enough, just_enough) == pytest.approx(1.0,
                                                                    abs=1e-6)


def test_ms_ssim_db_and_bpp():
  assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
  assert metrics.bits_per_pixel(1000, 100, 80) == 1.0
  assert metrics.bits_per_pixel(49152, 512, 768) == 1.0
  with pytest.raises(ValueError):
    metrics.bits_per_pixel(10, 0, 5)


def test_rejects_mismatched_or_float_images():
  image = _image(32, 32)
  with pytest.raises(ValueError):
    metrics.psnr_rgb(image, image[:16])
  with pytest.raises(TypeError):
    metrics.psnr_rgb(image, image.astype(np.float32))
  buffer = io.BytesIO()  # keeps the io import honest: PNG is lossless
  Image.fromarray(image).save(buffer, format="PNG")
  assert metrics.psnr_rgb(image, np.asarray(Image.open(buffer))) == math.inf
