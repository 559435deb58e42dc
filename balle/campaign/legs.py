"""A long training run in legs: the state a campaign commits between sessions.

One anchor model is trained over many working sessions ("legs"), on machines
that may be new each time, so everything a leg needs lives in a committed
folder (default `campaign/`; one folder per model family, e.g.
`campaign/bmshj2018/`):

  campaign.json  the plan (the training flags every leg uses) and one record
                 per finished leg: steps, training pixels, wall time, final
                 training loss, validation figures, and per test set
                 (Kodak, held-out photographs) bpp, PSNR, MS-SSIM and the
                 PSNR gaps to JPEG 2000 on the same images and (Kodak) to
                 the published curve of the family's paper (Ballé 2017,
                 Ballé 2018), at the same bpp (balle.campaign.records).
  anchor/        the anchor after the last leg, frozen and stored compactly
                 (`CompressionModel.compact_copy`: float16, inner kernels
                 int8; the earlier anchors were float16 throughout): 2.5 MB
                 for bls2017 at N=128, 7.2 MB for bmshj2018 at N=128,
                 M=192, the only thing a leg adds to git history.

  ladder/        the rate ladder (balle.campaign.ladder): one compact model per
                 quality 1..8, each fine-tuned from its neighbour towards
                 the anchor, recorded in campaign.json like a leg.

Adam's moments are not kept between legs (they would triple the bytes); each
leg warms its learning rate up again over `lr_warmup_steps`. A leg with
number K trains with seed K, so legs draw different patches. A campaign
started from scratch (no `init_from`) trains its first leg with the plan's
`first_leg_flags` over its flags (e.g. a from-scratch learning rate).
"""

import dataclasses
import json
import os

import numpy as np

from balle.campaign import ladder
from balle.campaign.records import ANCHOR
from balle.campaign.records import GAP_J2K
from balle.campaign.records import gpix
from balle.campaign.records import now
from balle.campaign.records import portable_flags
from balle.campaign.records import projection
from balle.campaign.records import published_curve
from balle.campaign.records import published_gap_key
from balle.campaign.records import published_title
from balle.campaign.records import save_measured
from balle.campaign.records import STATE_FILE
from balle.campaign.records import test_set_cell
from balle.campaign.records import test_set_columns
from balle.campaign.records import test_set_title
from balle.campaign.records import TRAINING_RECIPE
from balle.io.safe_write import write_file_atomic
from balle.models.compression_model import load_model



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
  # The compact anchor coded as whole files, per test set (e.g. "kodak"):
  # {"bpp": ..., "psnr_db": ..., "ms_ssim": ...} and, in legs recorded since
  # they were added, GAP_J2K and (Kodak) the gap to the published curve
  # (campaign_records.figures_of_test_set).
  test_sets: dict
  model_id: str
  flags: list                  # the experiments.train flags of this leg


class Campaign(ladder.LadderMixin):
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
    self.ladder = [ladder.RungRecord(**record) for record in state.get("ladder", [])]
    # JPEG 2000 measured on each test set: {set: [[bpp, PSNR dB], ...]}.
    self.references = state.get("references", {})

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

    The plan's flags, warm-started from the anchor (leg 1: from the plan's
    `init_from`, "" for none, with its `first_leg_flags` overriding the
    plan's), seed = leg number, the leg's own model_dir and budget.
    """
    leg = self.next_leg
    init_from = self.anchor_dir if self.legs else self.plan["init_from"]
    flags = [f"--{name}={value}"
             for name, value in self._next_leg_plan_flags().items()]
    flags += [f"--train_glob={pattern}" for pattern in train_globs]
    flags += [f"--init_from={init_from}", f"--seed={leg}",
              f"--model_dir={self.leg_dir(work_dir, leg)}",
              f"--max_time_s={max_time_s:g}"]
    return flags

  def _next_leg_plan_flags(self):
    """The plan's flags of the next leg: {name: value}."""
    train_flags = dict(self.plan["train_flags"])
    if not self.legs:  # e.g. a family's first leg, trained from scratch
      train_flags.update(self.plan.get("first_leg_flags", {}))
    return train_flags

  def end_leg(self, leg_final_dir, flags, train_loss, measure=None):
    """Records a finished leg whose frozen model is in `leg_final_dir`.

    Replaces anchor/ with the compact copy of that model (written to a new
    folder, measured there by `measure(folder)` -> {
    test set name -> {"bpp", "psnr_db", "ms_ssim"}) if given, then renamed
    into place) and appends the leg's record.
    """
    with open(os.path.join(leg_final_dir, TRAINING_RECIPE)) as f:
      recipe = json.load(f)
    steps = int(recipe["steps"])
    leg_gpix = gpix(steps, self._next_leg_plan_flags())
    previous_gpix = (self.legs[-1].cumulative_gpix if self.legs
                     else self.plan.get("init_gpix", 0.0))
    previous_time_s = (self.legs[-1].cumulative_wall_time_s if self.legs
                       else self.plan.get("init_wall_time_s", 0.0))
    anchor = load_model(leg_final_dir).compact_copy()
    test_sets = self._replace_anchor(anchor, measure) or {}
    record = LegRecord(
        leg=self.next_leg,
        date=now(), steps=steps, gpix=round(leg_gpix, 3),
        cumulative_gpix=round(previous_gpix + leg_gpix, 3),
        wall_time_s=recipe["wall_time_s"],
        cumulative_wall_time_s=round(previous_time_s + recipe["wall_time_s"],
                                     1),
        train_loss=round(float(train_loss), 4),
        validation_bpp=recipe["validation_bpp"],
        validation_psnr_db=recipe["validation_psnr_db"],
        test_sets=test_sets, model_id=anchor.model_id.hex(),
        flags=portable_flags(flags))
    self.legs.append(record)
    self.save()
    return record

  def _replace_anchor(self, model, measure=None):
    """Saves `model` as the new anchor/; returns measure(its folder)."""
    return save_measured(model, self.anchor_dir, measure)

  def save(self):
    _write_state(self.directory, self.plan,
                 [dataclasses.asdict(record) for record in self.legs],
                 overwrite=True,
                 ladder=[dataclasses.asdict(r) for r in self.ladder],
                 references=self.references)

  def markdown_table(self):
    """The leg log as a Markdown table (docs/campaign.md).

    Per test set: bpp / PSNR / MS-SSIM, then one column per PSNR gap any
    leg recorded for it ("-" where a leg has none)."""
    columns = test_set_columns(self.legs)
    titles = [test_set_title(column) for column in columns]
    titles = ["leg", "date", "steps", "Gpix (cumulative)",
              "wall h (cumulative)", "train loss",
              "validation bpp / PSNR dB"] + titles
    rows = ["| " + " | ".join(titles) + " |",
            "|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(columns)]
    for r in self.legs:
      figures = [test_set_cell(r.test_sets, column) for column in columns]
      cells = [str(r.leg), r.date, f"{r.steps:,}",
               f"{r.gpix:.1f} ({r.cumulative_gpix:.1f})",
               f"{r.wall_time_s / 3600:.2f} "
               f"({r.cumulative_wall_time_s / 3600:.2f})",
               f"{r.train_loss:.4f}",
               f"{r.validation_bpp:.3f} / {r.validation_psnr_db:.2f}"]
      rows.append("| " + " | ".join(cells + figures) + " |")
    return "\n".join(rows)

  def learning_curves(self):
    """[(label, [(cumulative Gpix, gap dB, leg)])]: per leg that recorded
    it, the anchor's PSNR gap at its bpp (0 dB = on the reference) on Kodak
    to the published curve of the family's paper and to JPEG 2000, and on
    the held-out photographs to JPEG 2000; curves without points left out.
    """
    published = published_curve(self.architecture)
    series = (("kodak", published_gap_key(published),
               f"Kodak - {published_title(published)} (published)"),
              ("kodak", GAP_J2K, "Kodak - JPEG 2000 (measured)"),
              ("holdout", GAP_J2K, "held-out photographs - JPEG 2000 "
               "(measured)"))
    curves = []
    for name, key, label in series:
      points = [(r.cumulative_gpix, r.test_sets[name][key], r.leg)
                for r in self.legs
                if r.test_sets.get(name, {}).get(key) is not None]
      if points:
        curves.append((label, points))
    return curves

  def projection_lines(self):
    """Per learning curve, where it reaches 0 dB (campaign_records.projection
    over all its legs) and the wall hours that takes at the campaign's
    pace so far (Gpix per wall hour over its legs)."""
    hours = sum(r.wall_time_s for r in self.legs) / 3600
    pace = sum(r.gpix for r in self.legs) / hours if hours else 0.0
    lines = []
    for label, points in self.learning_curves():
      gpix_now, gap_now = points[-1][:2]
      line = f"- {label}: {gap_now:+.2f} dB at {gpix_now:.1f} Gpix"
      fit = projection(points)
      if fit is None:
        lines.append(line + "; one point, no slope yet")
        continue
      line += (f"; {fit['slope_db_per_doubling']:+.3f} dB per doubling of "
               f"Gpix (least squares over legs "
               f"{', '.join(str(p[2]) for p in points)})")
      target = fit["gpix_at_target"]
      if target is None:
        lines.append(line + "; the gap does not close with compute")
      elif target <= gpix_now:
        lines.append(line + "; at or above the reference")
      else:
        more = target - gpix_now
        lines.append(line + f"; 0 dB at ~{target:,.0f} Gpix: {more:,.0f} "
                     f"Gpix more, ~{more / pace:,.0f} wall hours at "
                     f"{pace:.2f} Gpix/h")
    return lines

  def plot_learning_curve(self, path):
    """Writes a PNG of the `learning_curves` (gap vs cumulative Gpix).

    Written atomically, replacing `path`; ValueError when no leg has a gap
    yet.
    """
    styles = (("tab:red", "o"), ("tab:green", "s"), ("tab:blue", "^"))
    lines = [(points, label, *style) for (label, points), style in zip(
        self.learning_curves(), styles)]
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
      for pixels, gap, leg in points:
        axes.annotate(f"{leg}", (pixels, gap), textcoords="offset points",
                      xytext=(4, 4), fontsize=7, color=color)
    lambda_ = self.plan["train_flags"].get("lmbda")
    axes.set_xlabel("cumulative training pixels (Gpix, seed model included)")
    axes.set_ylabel("PSNR gap at the anchor's bpp (dB)")
    axes.set_title(f"Campaign anchor ({self.architecture})" +
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
           init_wall_time_s=0.0, first_leg_flags=None):
  """Starts a campaign: the plan only, no leg yet."""
  os.makedirs(directory, exist_ok=True)
  if os.path.exists(os.path.join(directory, STATE_FILE)):
    raise FileExistsError(f"{directory} already holds a campaign")
  plan = {"train_flags": dict(train_flags), "init_from": init_from,
          "init_gpix": init_gpix, "init_wall_time_s": init_wall_time_s}
  if first_leg_flags:
    plan["first_leg_flags"] = dict(first_leg_flags)
  _write_state(directory, plan, [], overwrite=False)
  return Campaign(directory)


def _write_state(directory, plan, legs, overwrite, ladder=(),
                 references=None):
  """Writes campaign.json atomically."""
  state = {"plan": plan, "legs": legs}
  if ladder:
    state["ladder"] = list(ladder)
  if references:
    state["references"] = references
  text = json.dumps(state, indent=2) + "\n"
  write_file_atomic(os.path.join(directory, STATE_FILE),
                    lambda f: f.write(text.encode()), overwrite=overwrite)


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
