"""A long training run in legs: the state a campaign commits between sessions.

One anchor model is trained over many working sessions ("legs"), on machines
that may be new each time, so everything a leg needs lives in a committed
folder (default `campaign/`):

  campaign.json  the plan (the training flags every leg uses) and one record
                 per finished leg: steps, training pixels, wall time, final
                 training loss, validation and Kodak figures.
  anchor/        the anchor after the last leg, frozen and rounded to float16
                 (`FactorizedPriorModel.half_precision_copy`): 4.2 MB at
                 N=128, the only thing a leg adds to git history.

Adam's moments are not kept between legs (they would triple the bytes); each
leg warms its learning rate up again over `lr_warmup_steps`. A leg with
number K trains with seed K, so legs draw different patches.
"""

import dataclasses
import datetime
import json
import os
import shutil
import tempfile

import numpy as np

from balle.model import FactorizedPriorModel
from balle.safe_write import write_file_atomic

STATE_FILE = "campaign.json"
ANCHOR = "anchor"
TRAINING_RECIPE = "recipe.json"


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
  # {"bpp": ..., "psnr_db": ..., "ms_ssim": ...}.
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
    anchor = FactorizedPriorModel.load(leg_final_dir).half_precision_copy()
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
    state = {"plan": self.plan,
             "legs": [dataclasses.asdict(record) for record in self.legs]}
    text = json.dumps(state, indent=2) + "\n"
    write_file_atomic(os.path.join(self.directory, STATE_FILE),
                      lambda f: f.write(text.encode()), overwrite=True)

  def markdown_table(self):
    """The leg log as a Markdown table (docs/campaign.md)."""
    names = sorted({name for r in self.legs for name in r.test_sets},
                   key=lambda name: (name != "kodak", name))
    rows = ["| leg | date | steps | Gpix (cumulative) | wall h (cumulative) "
            "| train loss | validation bpp / PSNR dB | " +
            " | ".join(f"{name} bpp / PSNR dB / MS-SSIM" for name in names) +
            " |",
            "|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(names)]
    for r in self.legs:
      figures = []
      for name in names:
        f = r.test_sets.get(name)
        figures.append("-" if f is None else
                       f"{f['bpp']:.3f} / {f['psnr_db']:.2f} / "
                       f"{f['ms_ssim']:.4f}")
      rows.append(
          f"| {r.leg} | {r.date} | {r.steps:,} | {r.gpix:.1f} "
          f"({r.cumulative_gpix:.1f}) | {r.wall_time_s / 3600:.2f} "
          f"({r.cumulative_wall_time_s / 3600:.2f}) | {r.train_loss:.4f} | "
          f"{r.validation_bpp:.3f} / {r.validation_psnr_db:.2f} | " +
          " | ".join(figures) + " |")
    return "\n".join(rows)


def create(directory, train_flags, init_from, init_gpix=0.0,
           init_wall_time_s=0.0):
  """Starts a campaign: the plan only, no leg yet."""
  os.makedirs(directory, exist_ok=True)
  if os.path.exists(os.path.join(directory, STATE_FILE)):
    raise FileExistsError(f"{directory} already holds a campaign")
  state = {"plan": {"train_flags": dict(train_flags), "init_from": init_from,
                    "init_gpix": init_gpix,
                    "init_wall_time_s": init_wall_time_s},
           "legs": []}
  text = json.dumps(state, indent=2) + "\n"
  write_file_atomic(os.path.join(directory, STATE_FILE),
                    lambda f: f.write(text.encode()))
  return Campaign(directory)


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
