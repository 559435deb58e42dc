"""Validation by real coding: the images coded by a frozen model into
complete .balle files and decoded again, measured as every evaluation in the
project measures (balle.evaluation.metrics). The training loop validates
with it (balle.training.loop), and so does the campaign's diagnosis.
"""

import numpy as np

from balle.coding import codec
from balle.evaluation import metrics


def coded_figures(coder, images):
  """Real coding of `images` by a frozen model: per-image arrays (bpp,
  mse_255, PSNR dB).

  `coder` is a frozen model (`Trainer.coding_copy()`). Each image becomes a
  complete .balle file (`codec.compress_image`: header, range-coded latents,
  checksum) and is decoded again; bpp is 8 x the file size over the pixel
  count, MSE and PSNR those of the decoded RGB image, as every evaluation in
  the project measures them (`balle.evaluation.metrics`).
  """
  bpps, mses, psnrs = [], [], []
  for image in images:
    file_bytes = codec.compress_image(coder, image)
    decoded = codec.decompress_image(file_bytes, coder)
    bpps.append(metrics.bits_per_pixel(len(file_bytes), *image.shape[:2]))
    mses.append(metrics.mse_255(image, decoded))
    psnrs.append(metrics.psnr_rgb(image, decoded))
  return np.array(bpps), np.array(mses), np.array(psnrs)


def reconstruction_pairs(coder, images, count=3, size=256):
  """TensorBoard's view of validation: for the first `count` images, the
  central size x size crop (or less) and beside it its decoding, coded for
  real as a file of its own; uint8 [h, 2w, C] each."""
  pairs = []
  for image in images[:count]:
    height, width = image.shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    crop = np.ascontiguousarray(image[top:top + size, left:left + size])
    decoded = codec.decompress_image(codec.compress_image(coder, crop), coder)
    pairs.append(np.concatenate([crop, decoded], axis=1))
  return pairs


def validate(coder, images):
  """Mean (bpp, PSNR dB) of `images` coded for real (`coded_figures`)."""
  bpps, _, psnrs = coded_figures(coder, images)
  return float(np.mean(bpps)), float(np.mean(psnrs))
