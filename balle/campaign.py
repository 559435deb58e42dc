"""A long training run in legs: the state a campaign commits between sessions.

One anchor model is trained over many working sessions ("legs"), on machines
that may be new each time, so everything a leg needs lives in a committed
folder (default `campaign/`):

  campaign.json  the plan (the training flags every leg uses) and one record
                 per finished leg: steps, training pixels, wall time, final
                 training loss, validation figures, and per test set
                 (Kodak, held-out photographs) bpp, PSNR, MS-SSIM and the
                 PSNR gaps to JPEG 2000 on the same images and (Kodak) to
                 the published Ballé 2017 curve, at the same bpp.
  anchor/        the anchor after the last leg, frozen and rounded to float16
                 (`CompressionModel.half_precision_copy`): 4.2 MB at
                 N=128, the only thing a leg adds to git history.

Adam's moments are not kept between legs (they would triple the bytes); each
leg warms its learning rate up again over `lr_warmup_steps`. A leg with
number K trains with seed K, so legs draw different patches.
"""

import dataclasses
import datetime
import json
import math
import os
import shutil
import tempfile

import numpy as np

from balle import rd_plot
from balle import reference_curves
from balle.compression_model import load_model
from balle.safe_write import write_file_atomic

STATE_FILE = "campaign.json"
ANCHOR = "anchor"
TRAINING_RECIPE = "recipe.json"

J2K_CODEC = "j2k"                  # balle.baselines: OpenJPEG 9/7
PUBLISHED_KEY = "balle2017-mse"    # balle.reference_curves: the paper, Kodak
# Keys of a test set's figures holding PSNR gaps (dB): the anchor's PSNR
# minus the reference's PSNR at the anchor's bpp (negative: below it).
GAP_J2K = "psnr_gap_j2k_db"
GAP_PUBLISHED = "psnr_gap_balle2017_db"
GAP_TITLES = {GAP_J2K: "JPEG 2000", GAP_PUBLISHED: "Ballé 2017"}


@dataclasses.dataclass
class LegRecord:
  """What one finished leg did and where it left the anchor."""
  leg: int
  date: str
  steps: int
  gpix: float                  # training pixels seen in this leg, 1e9
  cumulative_gpix: float       # all legs so far, including the seed model's
  wall_time_s: float           # training time of the leg (2 CPU cores)
  cumulative_wall_time_s: float
  train_loss: float            # mean over the leg's last logged windows
  validation_bpp: float        # held-out training images, real coding
  validation_psnr_db: float
  # The float16 anchor coded as whole files, per test set (e.g. "kodak"):
  # {"bpp": ..., "psnr_db": ..., "ms_ssim": ...} and, in legs recorded since
  # they were added, GAP_J2K and (Kodak) GAP_PUBLISHED (figures_of_test_set).
  test_sets: dict
  model_id: str
  flags: list                  # the experiments.train flags of this leg


class Campaign:
  """The committed state of a campaign in `directory`."""

  def __init__(self, directory):
    self.directory = directory
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
      raise FileNotFoundError(f"no campaign at {directory}: {STATE_FILE} "
                              "missing")
    with open(path) as f:
      state = json.load(f)
    self.plan = state["plan"]
    self.legs = [LegRecord(**record) for record in state["legs"]]

  @property
  def anchor_dir(self):
    return os.path.join(self.directory, ANCHOR)

  @property
  def next_leg(self):
    return len(self.legs) + 1

  def leg_dir(self, work_dir, leg=None):
    return os.path.join(work_dir, f"leg-{leg or self.next_leg}")

  def train_flags(self, work_dir, train_globs, max_time_s):
    """The experiments.train flags of the next leg.

    The plan's flags, warm-started from the anchor (leg 1: the plan's
    `init_from`), seed = leg number, the leg's own model_dir and budget.
    """
    leg = self.next_leg
    init_from = self.anchor_dir if self.legs else self.plan["init_from"]
    flags = [f"--{name}={value}"
             for name, value in self.plan["train_flags"].items()]
    flags += [f"--train_glob={pattern}" for pattern in train_globs]
    flags += [f"--init_from={init_from}", f"--seed={leg}",
              f"--model_dir={self.leg_dir(work_dir, leg)}",
              f"--max_time_s={max_time_s:g}"]
    return flags

  def end_leg(self, leg_final_dir, flags, train_loss, measure=None):
    """Records a finished leg whose frozen model is in `leg_final_dir`.

    Replaces anchor/ with the float16 copy of that model (written to a new
    folder, measured there by `measure(folder)` -> {
    test set name -> {"bpp", "psnr_db", "ms_ssim"}) if given, then renamed
    into place) and appends the leg's record.
    """
    with open(os.path.join(leg_final_dir, TRAINING_RECIPE)) as f:
      recipe = json.load(f)
    plan = self.plan["train_flags"]
    steps = int(recipe["steps"])
    gpix = steps * int(plan["batchsize"]) * int(plan["patchsize"]) ** 2 / 1e9
    previous_gpix = (self.legs[-1].cumulative_gpix if self.legs
                     else self.plan.get("init_gpix", 0.0))
    previous_time_s = (self.legs[-1].cumulative_wall_time_s if self.legs
                       else self.plan.get("init_wall_time_s", 0.0))
    anchor = load_model(leg_final_dir).half_precision_copy()
    test_sets = self._replace_anchor(anchor, measure) or {}
    record = LegRecord(
        leg=self.next_leg,
        date=datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"),
        steps=steps, gpix=round(gpix, 3),
        cumulative_gpix=round(previous_gpix + gpix, 3),
        wall_time_s=recipe["wall_time_s"],
        cumulative_wall_time_s=round(previous_time_s + recipe["wall_time_s"],
                                     1),
        train_loss=round(float(train_loss), 4),
        validation_bpp=recipe["validation_bpp"],
        validation_psnr_db=recipe["validation_psnr_db"],
        test_sets=test_sets, model_id=anchor.model_id.hex(),
        flags=list(flags))
    self.legs.append(record)
    self.save()
    return record

  def _replace_anchor(self, model, measure=None):
    """Saves `model` as the new anchor/; returns measure(its folder)."""
    staging = tempfile.mkdtemp(dir=self.directory, prefix=".anchor-")
    try:
      model.save(staging, overwrite=True)
      figures = measure(staging) if measure else None
      old = None
      if os.path.exists(self.anchor_dir):
        old = self.anchor_dir + ".old"
        os.replace(self.anchor_dir, old)
      os.replace(staging, self.anchor_dir)
      if old:
        shutil.rmtree(old)
      return figures
    finally:
      if os.path.exists(staging):
        shutil.rmtree(staging)

  def save(self):
    _write_state(self.directory, self.plan,
                 [dataclasses.asdict(record) for record in self.legs],
                 overwrite=True)

  def markdown_table(self):
    """The leg log as a Markdown table (docs/campaign.md).

    Per test set: bpp / PSNR / MS-SSIM, then one column per PSNR gap any
    leg recorded for it ("-" where a leg has none)."""
    names = sorted({name for r in self.legs for name in r.test_sets},
                   key=lambda name: (name != "kodak", name))
    columns = []  # (test set, figure key or None for bpp / PSNR / MS-SSIM)
    for name in names:
      columns.append((name, None))
      columns += [(name, gap) for gap in GAP_TITLES
                  if any(gap in r.test_sets.get(name, {}) for r in self.legs)]
    titles = [f"{name} bpp / PSNR dB / MS-SSIM" if key is None else
              f"{name} PSNR gap to {GAP_TITLES[key]} dB"
              for name, key in columns]
    titles = ["leg", "date", "steps", "Gpix (cumulative)",
              "wall h (cumulative)", "train loss",
              "validation bpp / PSNR dB"] + titles
    rows = ["| " + " | ".join(titles) + " |",
            "|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(columns)]
    for r in self.legs:
      figures = []
      for name, key in columns:
        f = r.test_sets.get(name)
        if f is None:
          figures.append("-")
        elif key is None:
          figures.append(f"{f['bpp']:.3f} / {f['psnr_db']:.2f} / "
                         f"{f['ms_ssim']:.4f}")
        else:
          figures.append("-" if f.get(key) is None else f"{f[key]:+.2f}")
      cells = [str(r.leg), r.date, f"{r.steps:,}",
               f"{r.gpix:.1f} ({r.cumulative_gpix:.1f})",
               f"{r.wall_time_s / 3600:.2f} "
               f"({r.cumulative_wall_time_s / 3600:.2f})",
               f"{r.train_loss:.4f}",
               f"{r.validation_bpp:.3f} / {r.validation_psnr_db:.2f}"]
      rows.append("| " + " | ".join(cells + figures) + " |")
    return "\n".join(rows)

  def plot_learning_curve(self, path):
    """Writes a PNG of the PSNR gaps (dB) vs cumulative training Gpix.

    One point per leg that recorded the gap: Kodak to the published Ballé
    2017 curve and to JPEG 2000, held-out photographs to JPEG 2000 (each at
    the anchor's bpp; 0 dB = on the reference). Written atomically, replacing
    `path`; ValueError when no leg has a gap yet.
    """
    series = (("kodak", GAP_PUBLISHED, "Kodak - Ballé 2017 (published)",
               "tab:red", "o"),
              ("kodak", GAP_J2K, "Kodak - JPEG 2000 (measured)", "tab:green",
               "s"),
              ("holdout", GAP_J2K, "held-out photographs - JPEG 2000 "
               "(measured)", "tab:blue", "^"))
    lines = []
    for name, key, label, color, marker in series:
      points = [(r.cumulative_gpix, r.test_sets[name][key], r.leg)
                for r in self.legs
                if r.test_sets.get(name, {}).get(key) is not None]
      if points:
        lines.append((points, label, color, marker))
    if not lines:
      raise ValueError("no leg has recorded a PSNR gap yet")
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    figure, axes = pyplot.subplots(figsize=(8, 4.8))
    axes.axhline(0.0, color="gray", linewidth=1)
    for points, label, color, marker in lines:
      axes.plot([p[0] for p in points], [p[1] for p in points], color=color,
                marker=marker, label=label)
      for gpix, gap, leg in points:
        axes.annotate(f"{leg}", (gpix, gap), textcoords="offset points",
                      xytext=(4, 4), fontsize=7, color=color)
    lambda_ = self.plan["train_flags"].get("lmbda")
    axes.set_xlabel("cumulative training pixels (Gpix, seed model included)")
    axes.set_ylabel("PSNR gap at the anchor's bpp (dB)")
    axes.set_title("Campaign anchor" +
                   (f", lambda = {lambda_:g}" if lambda_ else "") +
                   ": PSNR minus reference (labels: leg)")
    axes.grid(True, alpha=0.4)
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
      write_file_atomic(path, lambda f: figure.savefig(f, format="png",
                                                       dpi=120),
                        overwrite=True)
    finally:
      pyplot.close(figure)
    return path


def create(directory, train_flags, init_from, init_gpix=0.0,
           init_wall_time_s=0.0):
  """Starts a campaign: the plan only, no leg yet."""
  os.makedirs(directory, exist_ok=True)
  if os.path.exists(os.path.join(directory, STATE_FILE)):
    raise FileExistsError(f"{directory} already holds a campaign")
  plan = {"train_flags": dict(train_flags), "init_from": init_from,
          "init_gpix": init_gpix, "init_wall_time_s": init_wall_time_s}
  _write_state(directory, plan, [], overwrite=False)
  return Campaign(directory)


def _write_state(directory, plan, legs, overwrite):
  """Writes campaign.json atomically."""
  text = json.dumps({"plan": plan, "legs": legs}, indent=2) + "\n"
  write_file_atomic(os.path.join(directory, STATE_FILE),
                    lambda f: f.write(text.encode()), overwrite=overwrite)


def figures_of_test_set(results, j2k=None, published=None):
  """A test set's figures from a one-model results document (results.json).

  {"bpp", "psnr_db", "ms_ssim"} of the model, plus GAP_J2K when `j2k` (a
  results document of codec "j2k" on the same images) is given and
  GAP_PUBLISHED when `published` (a reference_curves.PublishedCurve) is:
      gap = PSNR(model) - PSNR_ref(bpp(model))   [dB],
  PSNR_ref interpolated linearly in log(bpp) (rd_plot.value_at_log_bpp);
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
    references[GAP_J2K] = rd_plot.curve_from_results(j2k).psnr_rgb
  if published is not None:
    references[GAP_PUBLISHED] = published.psnr_rgb
  for key, points in references.items():
    gap = figures["psnr_db"] - rd_plot.value_at_log_bpp(points,
                                                        figures["bpp"])
    figures[key] = round(gap, 3) if math.isfinite(gap) else None
  return figures


def published_curve():
  """The published Ballé 2017 opt-MSE Kodak curve (PUBLISHED_KEY)."""
  return reference_curves.load(PUBLISHED_KEY)


def final_training_loss(model_dir, last_steps=2000):
  """Mean of the logged training loss over the run's last `last_steps`.

  Reads the `train/loss` summaries the trainer writes in `model_dir` (one
  value per log window, each the mean over that window's steps).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  points = {}
  for name in sorted(os.listdir(model_dir)):
    if not name.startswith("events.out.tfevents"):
      continue
    for event in tf.compat.v1.train.summary_iterator(
        os.path.join(model_dir, name)):
      for value in event.summary.value:
        if value.tag == "train/loss":
          points[event.step] = float(tf.make_ndarray(value.tensor))
  if not points:
    raise ValueError(f"no train/loss summaries in {model_dir}")
  last = max(points)
  recent = [loss for step, loss in points.items() if step > last - last_steps]
  return float(np.mean(recent))
