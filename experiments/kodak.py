"""The project's Kodak comparison, as the runners set it up (no flags here).

The library measures, plots and tabulates whatever it is given; this module
holds the choices of the Kodak report: where the 24 images come from, the
label of each model family's curve, the published curves drawn beside it and
the anchors of the BD-rate and operating-point tables.
"""

import os
import urllib.error
import urllib.request

from absl import logging

from balle import evaluation
from balle.evaluation import rd_curves
from balle.io import safe_write

KODAK_URL = "http://r0k.us/graphics/kodak/kodak/kodim{:02d}.png"
NUM_KODAK_IMAGES = 24

# The label of each model family's curve.
MODEL_LABELS = {"bls2017": "Ballé 2017 factorized prior (this project)",
                "bmshj2018": "Ballé 2018 scale hyperprior (this project)"}
PUBLISHED_CURVES = ("balle2017-mse", "balle2018-mse", "jpeg420-published",
                    "j2k-opj5-published", "bpg444-published")
ANCHORS = (
    rd_curves.Anchor("j2k", rd_curves.MEASURED, "JPEG 2000 9/7 (measured)"),
    rd_curves.Anchor("balle2017", rd_curves.PUBLISHED,
                     "Ballé 2017 (published)", metrics=("psnr", "ms_ssim_db")),
    rd_curves.Anchor("balle2018", rd_curves.PUBLISHED,
                     "Ballé 2018 (published)"),
    rd_curves.Anchor("bls2017", rd_curves.MODEL,
                     "this project's factorized prior"),
)


def download_kodak(directory, url_pattern=KODAK_URL, timeout_s=30):
  """Downloads kodim01..24.png into `directory` (skips files present)."""
  os.makedirs(directory, exist_ok=True)
  for index in range(1, NUM_KODAK_IMAGES + 1):
    name = f"kodim{index:02d}.png"
    path = os.path.join(directory, name)
    if os.path.exists(path):
      continue
    with urllib.request.urlopen(url_pattern.format(index),
                                timeout=timeout_s) as response:
      data = response.read()
    safe_write.write_file_atomic(path, lambda f, d=data: f.write(d))
    logging.info("[%2d/%d] %s (%d KB)", index, NUM_KODAK_IMAGES, name,
                 len(data) // 1024)


def ensure_kodak(directory, download=True):
  """Downloads Kodak into `directory` when it holds no images.

  Raises FileNotFoundError with one clear message when that is not possible.
  """
  try:
    evaluation.list_image_files(directory)
    return
  except FileNotFoundError:
    pass
  if download:
    logging.info("no images in %s: downloading the Kodak set from %s",
                 directory, KODAK_URL.rsplit("/", 1)[0])
    try:
      download_kodak(directory)
      return
    except (OSError, urllib.error.URLError) as error:
      reason = f"download failed: {getattr(error, 'reason', error)}"
  else:
    reason = "download disabled"
  raise FileNotFoundError(
      f"no Kodak images in {directory!r} ({reason}). Put kodim01.png ... "
      "kodim24.png in a folder and pass --images=DIR.")
