"""What a campaign records of a model and how: the figures of a test set with
their PSNR gaps to the references, training pixels, portable flags, and saving a
model beside its measurement (balle.campaign, balle.campaign.ladder).
"""

import datetime
import math

import numpy as np

from balle import pretrained
from balle.evaluation import rd_curves
from balle.evaluation import reference_curves
from balle.io.safe_write import staged_directory
from balle.training.loop import portable_path

STATE_FILE = "campaign.json"       # a campaign's plan and records
ANCHOR = "anchor"                  # the anchor's folder in a campaign's
TRAINING_RECIPE = "recipe.json"    # a trained model's record (balle.training)

J2K_CODEC = "j2k"                  # balle.evaluation.baselines: OpenJPEG 9/7
# Keys of a test set's figures holding PSNR gaps (dB): the model's PSNR
# minus the reference's PSNR at the model's bpp (negative: below it).
GAP_J2K = "psnr_gap_j2k_db"
# Each family's published Kodak curve (balle.evaluation.reference_curves key):
# its own paper's opt-MSE models.
PUBLISHED_KEYS = {"bls2017": "balle2017-mse", "bmshj2018": "balle2018-mse"}
# The points of each published curve whose models had this project's
# filter count N = 128: the factorized curve's five lower rates (its three
# higher ones had N = 192, M = 320; balle/reference_data/balle2017-mse.txt).
LIKE_FOR_LIKE_POINTS = {"bls2017": 5}
GAP_TITLES = {GAP_J2K: "JPEG 2000",
              "psnr_gap_balle2017_db": "Ballé 2017",
              "psnr_gap_balle2018_db": "Ballé 2018"}


def published_curve(architecture="bls2017"):
  """The published opt-MSE Kodak curve of `architecture`'s paper."""
  if architecture not in PUBLISHED_KEYS:
    raise ValueError(f"no published curve for architecture {architecture!r};"
                     f" known: {sorted(PUBLISHED_KEYS)}")
  return reference_curves.load(PUBLISHED_KEYS[architecture])


def published_gap_key(curve):
  """The figure key of the PSNR gap to the published `curve`."""
  return f"psnr_gap_{curve.family}_db"


def published_title(curve):
  """"Ballé 2017" and the like: the published `curve` in a table."""
  return GAP_TITLES[published_gap_key(curve)]


def figures_of_test_set(results, j2k=None, published=None):
  """A test set's figures from a one-model results document (results.json).

  {"bpp", "psnr_db", "ms_ssim"} of the model, plus GAP_J2K when `j2k` (a
  results document of codec "j2k" on the same images) is given and
  published_gap_key(published) when `published` (a
  reference_curves.PublishedCurve) is:
      gap = PSNR(model) - PSNR_ref(bpp(model))   [dB],
  PSNR_ref interpolated linearly in log(bpp) (rd_curves.value_at_log_bpp);
  None when the model's bpp is outside the reference's range.
  """
  values = results["results"]
  figures = {"bpp": values["bpp"][0], "psnr_db": values["psnr-rgb"][0],
             "ms_ssim": values["ms-ssim-rgb"][0]}
  references = {}
  if j2k is not None:
    ours, theirs = results.get("image_set"), j2k.get("image_set")
    if ours and theirs and ours != theirs:
      raise ValueError(f"JPEG 2000 was measured on other images (image set "
                       f"{theirs}) than the model ({ours})")
    references[GAP_J2K] = rd_curves.curve_from_results(j2k).psnr_rgb
  if published is not None:
    references[published_gap_key(published)] = published.psnr_rgb
  for key, points in references.items():
    gap = figures["psnr_db"] - rd_curves.value_at_log_bpp(points,
                                                          figures["bpp"])
    figures[key] = round(gap, 3) if math.isfinite(gap) else None
  return figures


def test_set_columns(records):
  """The test-set columns of a table of leg or rung `records`: per test set
  (Kodak first) (name, None) for its bpp / PSNR / MS-SSIM, then (name, key)
  for each PSNR gap any record has for it."""
  names = sorted({name for r in records for name in r.test_sets},
                 key=lambda name: (name != "kodak", name))
  columns = []
  for name in names:
    columns.append((name, None))
    columns += [(name, key) for key in GAP_TITLES
                if any(key in r.test_sets.get(name, {}) for r in records)]
  return columns


def test_set_title(column):
  name, key = column
  return (f"{name} bpp / PSNR dB / MS-SSIM" if key is None else
          f"{name} PSNR gap to {GAP_TITLES[key]} dB")


def test_set_cell(test_sets, column):
  """A record's cell of `column` ("-" where it has no figure)."""
  name, key = column
  figures = test_sets.get(name)
  if figures is None:
    return "-"
  if key is None:
    return pretrained.format_figures(figures)
  return "-" if figures.get(key) is None else f"{figures[key]:+.2f}"


def gpix(steps, flags):
  """Training pixels (Gpix) of `steps` steps under `flags` ({name: value}
  of experiments.train flags with batchsize and patchsize)."""
  return steps * int(flags["batchsize"]) * int(flags["patchsize"]) ** 2 / 1e9


def projection(points, target_db=0.0):
  """Where a learning curve reaches `target_db`: a least-squares fit of
      gap(g) = a + b log2(g)   [dB, g = cumulative training Gpix]
  to `points` [(g, gap)], solved for gap(g*) = target_db.

  {"slope_db_per_doubling": b, "gpix_at_target": g*}, g* None when the
  gap does not close with compute (b <= 0, or g* beyond 2^1000 Gpix); None
  under two distinct g.
  """
  gpix_values = np.array([p[0] for p in points], np.float64)
  if len(set(gpix_values)) < 2:
    return None
  slope, intercept = np.polyfit(np.log2(gpix_values),
                                [p[1] for p in points], 1)
  at_target = None
  if slope > 1e-6:  # a flat curve fits to +-1e-16
    doublings = (target_db - intercept) / slope
    at_target = 2.0 ** doublings if doublings < 1000 else None
  return {"slope_db_per_doubling": float(slope),
          "gpix_at_target": None if at_target is None else float(at_target)}


def portable_flags(flags):
  """experiments.train `flags` ("--name=value") as records keep them: path
  values through training.portable_path, so no absolute path of the
  training machine is committed."""
  portable = []
  for flag in flags:
    name, equals, value = flag.partition("=")
    if equals and name.lstrip("-") in _PATH_FLAGS:
      flag = f"{name}={portable_path(value)}"
    portable.append(flag)
  return portable


_PATH_FLAGS = ("train_glob", "validation_glob", "init_from", "model_dir")


def now():
  return datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y-%m-%d %H:%M UTC")


def save_measured(model, directory, measure=None):
  """Saves `model` to `directory` (replacing it); returns measure(folder).

  The model is written and measured in a staging folder beside `directory`
  and renamed into place only when both succeeded.
  """
  with staged_directory(directory, overwrite=True) as staging:
    model.save(staging, overwrite=True)
    return measure(staging) if measure else None
