"""Image quality and rate metrics used by every evaluation in the project.

For uint8 images x, x^ of shape [H, W, C] (C = 3 for RGB, 1 for gray):

    mse_255  = mean over H, W, C of (x - x^)^2          (0..255 scale)
    PSNR     = 10 log10(255^2 / mse_255)   dB            (inf when x == x^)
    MS-SSIM  = Wang et al. (2003), 5 scales, 11x11 Gaussian window (sigma 1.5),
               computed per channel and averaged over channels
    MS-SSIM dB = -10 log10(1 - MS-SSIM)                  (inf when MS-SSIM == 1)
    bpp      = 8 * num_bytes / (H * W)

PSNR is over all channels at once ("RGB PSNR", the convention of the published
Kodak curves), not an average of per-channel PSNRs.

PSNR and MS-SSIM are TensorFlow's `tf.image.psnr` and `tf.image.ssim_multiscale`
(computed in float32). MS-SSIM with the default 5 scales needs each side to be
at least MS_SSIM_MIN_SIZE = 161 pixels (the image is halved 4 times, rounding
up, and the coarsest scale must still hold the 11-pixel window). For smaller
images `ms_ssim` returns NaN rather than a value from fewer scales, which would
not be comparable with published figures; `ms_ssim_note` says why.
"""

import math

import numpy as np
import tensorflow as tf

MS_SSIM_SCALES = 5
MS_SSIM_FILTER_SIZE = 11
# Smallest side s with ceil(s / 2**(scales - 1)) >= filter size.
MS_SSIM_MIN_SIZE = (MS_SSIM_FILTER_SIZE - 1) * 2 ** (MS_SSIM_SCALES - 1) + 1


def _as_uint8_pair(original, reconstruction):
  original = np.asarray(original)
  reconstruction = np.asarray(reconstruction)
  if original.shape != reconstruction.shape:
    raise ValueError(f"shapes differ: {original.shape} vs "
                     f"{reconstruction.shape}")
  if original.ndim != 3:
    raise ValueError(f"expected [H, W, C] images, got shape {original.shape}")
  if original.dtype != np.uint8 or reconstruction.dtype != np.uint8:
    raise TypeError(f"expected uint8 images, got {original.dtype} and "
                    f"{reconstruction.dtype}")
  return original, reconstruction


def mse_255(original, reconstruction):
  """Mean squared error over all pixels and channels, 0..255 scale (float64)."""
  original, reconstruction = _as_uint8_pair(original, reconstruction)
  difference = original.astype(np.float64) - reconstruction.astype(np.float64)
  return float(np.mean(np.square(difference)))


@tf.function(reduce_retracing=True)
def _tf_psnr(original, reconstruction):
  return tf.image.psnr(original, reconstruction, max_val=255)


@tf.function(reduce_retracing=True)
def _tf_ms_ssim(original, reconstruction):
  return tf.image.ssim_multiscale(original, reconstruction, max_val=255)


def psnr_from_mse(mse_255):
  """10 log10(255^2 / mse_255) in dB for a mean squared error on the 0..255
  scale (e.g. a training batch's); inf for 0."""
  return 10 * math.log10(255 ** 2 / mse_255) if mse_255 > 0 else math.inf


def psnr_rgb(original, reconstruction):
  """10 log10(255^2 / MSE) in dB, MSE over all channels; inf if identical."""
  original, reconstruction = _as_uint8_pair(original, reconstruction)
  return float(_tf_psnr(original, reconstruction))


def ms_ssim_supported(height, width):
  """Whether 5-scale MS-SSIM can be computed for an image of this size."""
  return min(height, width) >= MS_SSIM_MIN_SIZE


def ms_ssim_note(height, width):
  """Why `ms_ssim` is NaN for this size, or "" when it is defined."""
  if ms_ssim_supported(height, width):
    return ""
  return (f"MS-SSIM undefined for {height}x{width}: 5-scale MS-SSIM needs "
          f"both sides >= {MS_SSIM_MIN_SIZE} px")


def ms_ssim(original, reconstruction):
  """5-scale MS-SSIM averaged over channels, in [0, 1]; NaN for small images."""
  original, reconstruction = _as_uint8_pair(original, reconstruction)
  if not ms_ssim_supported(*original.shape[:2]):
    return math.nan
  return float(_tf_ms_ssim(original, reconstruction))


def ms_ssim_db(ms_ssim_value):
  """-10 log10(1 - MS-SSIM): inf for 1, NaN for NaN."""
  if math.isnan(ms_ssim_value):
    return math.nan
  if ms_ssim_value >= 1.0:
    return math.inf
  return -10.0 * math.log10(1.0 - ms_ssim_value)


def bits_per_pixel(num_bytes, height, width):
  """8 * num_bytes / (height * width)."""
  if height <= 0 or width <= 0:
    raise ValueError(f"image size must be positive, got {height}x{width}")
  return 8.0 * num_bytes / (height * width)
