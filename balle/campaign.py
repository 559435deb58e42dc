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

  ladder/        the rate ladder (issue 11): one float16 model per quality
                 1..8, each fine-tuned from its neighbour towards the anchor
                 (`LADDER`, `Rung`), recorded in campaign.json like a leg.

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

from balle import pretrained
from balle import rd_plot
from balle import reference_curves
from balle.compression_model import CONFIG_FILE
from balle.compression_model import ModelConfig
from balle.compression_model import WEIGHTS_FILE
from balle.compression_model import load_model
from balle.safe_write import write_file_atomic
from balle.training import portable_path

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


@dataclasses.dataclass(frozen=True)
class Rung:
  """One model of the rate ladder: `quality` 1..8 of `balle compress`."""
  quality: int
  lmbda: float
  num_filters: int

  @property
  def name(self):
    """The rung's model name (its ModelConfig's default name)."""
    return ModelConfig(lmbda=self.lmbda, num_filters=self.num_filters).name


ANCHOR_QUALITY = 5  # the anchor is this rung (its lambda and N)
# The qualities of `balle compress` (issue 11's eight rates), all at the
# anchor's N = 128. Peers use N = 192 above quality 5, but the anchor
# widened to 192 (balle.widen) spends its first thousands of steps silencing
# the fresh channels: on 2026-11-29 rung 6 made that way (1,500 steps)
# coded Kodak at 2.049 bpp / 35.37 dB, ~5 dB under the published curve
# (docs/campaign.md, "Making the ladder").
LADDER = tuple(Rung(quality, lmbda, 128)
               for quality, lmbda in enumerate(pretrained.QUALITY_LAMBDAS,
                                               start=1))
# Fine-tuning order: each rung starts from its neighbour towards the anchor
# (one octave of lambda), so the lower chain goes 4, 3, 2, 1, the upper 6, 7,
# 8.
LADDER_ORDER = (5, 4, 3, 2, 1, 6, 7, 8)
# What a rung's fine-tuning changes in the plan's flags. A rung has to move
# one octave of lambda in a short run, which the anchor's recipe (constant
# 1e-4, an average over ~1,000 steps) does not do: with it rung 4 (0.025 ->
# 0.013, 1,500 steps) went from 0.891 to only 0.800 Kodak bpp, its training
# bpp still falling and its saved average lagging ~1,000 steps behind. So a
# rung moves at 3e-4, settles at 3e-5 over the last 30 % of its steps and
# averages over ~200 steps.
RUNG_RECIPE = {"learning_rate": 3e-4, "lr_schedule": "steps",
               "lr_boundaries": 0.7, "lr_values": 3e-5, "ema_decay": 0.995}
LADDER_DIR = "ladder"


def rung(quality):
  """The rung of `quality` (1..8)."""
  for candidate in LADDER:
    if candidate.quality == quality:
      return candidate
  raise ValueError(f"no ladder rung of quality {quality}; qualities are "
                   f"{[r.quality for r in LADDER]}")


def parent_quality(quality):
  """The rung a rung is fine-tuned from (None: the anchor itself)."""
  if quality == ANCHOR_QUALITY:
    return None
  return quality + 1 if quality < ANCHOR_QUALITY else quality - 1


@dataclasses.dataclass
class RungRecord:
  """A finished rung of the ladder: how it was made and what it measures."""
  quality: int
  lmbda: float
  num_filters: int
  date: str
  parent: str                  # "anchor" or the parent rung's model name
  steps: int                   # fine-tuning steps (0: the anchor as it is)
  wall_time_s: float
  validation_bpp: float
  validation_psnr_db: float
  test_sets: dict              # as LegRecord.test_sets
  model_id: str
  flags: list


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
    self.ladder = [RungRecord(**record) for record in state.get("ladder", [])]
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
    gpix = _gpix(steps, plan)
    previous_gpix = (self.legs[-1].cumulative_gpix if self.legs
                     else self.plan.get("init_gpix", 0.0))
    previous_time_s = (self.legs[-1].cumulative_wall_time_s if self.legs
                       else self.plan.get("init_wall_time_s", 0.0))
    anchor = load_model(leg_final_dir).half_precision_copy()
    test_sets = self._replace_anchor(anchor, measure) or {}
    record = LegRecord(
        leg=self.next_leg,
        date=_now(), steps=steps, gpix=round(gpix, 3),
        cumulative_gpix=round(previous_gpix + gpix, 3),
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
    return _save_measured(model, self.anchor_dir, measure)

  # -- the rate ladder --------------------------------------------------------

  def rung_dir(self, quality):
    """Committed folder of rung `quality`'s float16 model."""
    return os.path.join(self.directory, LADDER_DIR, rung(quality).name)

  def next_rung(self):
    """The next rung to make, in LADDER_ORDER; None when all are made."""
    made = {record.quality for record in self.ladder}
    for quality in LADDER_ORDER:
      if quality not in made:
        return rung(quality)
    return None

  def rung_train_flags(self, quality, work_dir, train_globs, steps):
    """The experiments.train flags fine-tuning rung `quality` from its parent.

    The plan's flags changed by RUNG_RECIPE, with the rung's lambda and N,
    `steps` steps, one validation at the end, warm-started from the parent
    rung's committed float16 model (widened by the trainer where N grows),
    seed 100 + quality.
    """
    target = rung(quality)
    parent = parent_quality(quality)
    if parent is None:
      raise ValueError(f"rung {quality} is the anchor itself, not trained")
    if parent not in {record.quality for record in self.ladder}:
      raise ValueError(f"rung {quality} starts from rung {parent}, which is "
                       "not made yet")
    plan = dict(self.plan["train_flags"], **RUNG_RECIPE, lmbda=target.lmbda,
                num_filters=target.num_filters, max_steps=steps,
                validate_every=steps)
    flags = [f"--{name}={value}" for name, value in plan.items()]
    flags += [f"--train_glob={pattern}" for pattern in train_globs]
    flags += [f"--init_from={self.rung_dir(parent)}",
              f"--seed={100 + quality}",
              f"--model_dir={os.path.join(work_dir, LADDER_DIR, target.name)}"]
    return flags

  def end_rung(self, quality, final_dir=None, flags=(), measure=None):
    """Records rung `quality`: its frozen model in `final_dir`, or for the
    anchor's rung (final_dir None) the anchor as it is.

    The float16 copy goes to rung_dir(quality) and is measured there by
    `measure` (as in end_leg); the anchor's rung reuses the last leg's
    figures when the anchor is that leg's model.
    """
    target = rung(quality)
    if final_dir is None:
      if quality != ANCHOR_QUALITY or not self.legs:
        raise ValueError("only the anchor's rung is made without training, "
                         "after at least one leg")
      model = load_model(self.anchor_dir)
      last = self.legs[-1]
      if model.model_id.hex() == last.model_id:
        measure = None
      elif measure is None:
        raise ValueError(f"the anchor ({model.model_id.hex()}) is not the "
                         f"model leg {last.leg} measured ({last.model_id}); "
                         "pass `measure` to measure it")
      recipe = {"steps": 0, "wall_time_s": 0.0,
                "validation_bpp": last.validation_bpp,
                "validation_psnr_db": last.validation_psnr_db}
      parent, test_sets = ANCHOR, dict(last.test_sets)
    else:
      with open(os.path.join(final_dir, TRAINING_RECIPE)) as f:
        recipe = json.load(f)
      model = load_model(final_dir)
      parent, test_sets = rung(parent_quality(quality)).name, {}
    config = model.config
    if (config.lmbda, config.num_filters) != (target.lmbda,
                                             target.num_filters):
      raise ValueError(
          f"rung {quality} is lambda {target.lmbda} N {target.num_filters}, "
          f"the model is lambda {config.lmbda} N {config.num_filters}")
    model = model.half_precision_copy()
    test_sets = _save_measured(model, self.rung_dir(quality),
                               measure) or test_sets
    record = RungRecord(
        quality=quality, lmbda=target.lmbda, num_filters=target.num_filters,
        date=_now(), parent=parent, steps=int(recipe["steps"]),
        wall_time_s=recipe["wall_time_s"],
        validation_bpp=recipe["validation_bpp"],
        validation_psnr_db=recipe["validation_psnr_db"], test_sets=test_sets,
        model_id=model.model_id.hex(), flags=portable_flags(flags))
    self.ladder = [r for r in self.ladder if r.quality != quality] + [record]
    self.ladder.sort(key=lambda r: r.quality)
    self.save()
    return record

  def rung_training(self, quality):
    """(Gpix, wall seconds) of all the training rung `quality`'s model has
    had: the anchor's (seed model and legs) and each fine-tuning along its
    chain. None when the anchor's rung is not the model of a recorded leg."""
    records = {r.quality: r for r in self.ladder}
    gpix = wall_time_s = 0.0
    while quality != ANCHOR_QUALITY:
      record = records[quality]
      gpix += _gpix(record.steps,
                    dict(flag[2:].split("=", 1) for flag in record.flags))
      wall_time_s += record.wall_time_s
      quality = parent_quality(quality)
    legs = [leg for leg in self.legs
            if leg.model_id == records[ANCHOR_QUALITY].model_id]
    if not legs:
      return None
    return (gpix + legs[0].cumulative_gpix,
            wall_time_s + legs[0].cumulative_wall_time_s)

  def ship(self, destination, replace_others=False):
    """Copies every made rung into `destination` (a balle/pretrained
    folder) as <rung name>/: its config.json and weights.npz byte for byte
    (the files that were measured, stored once by git), recipe.json (the
    rung's record: parent, steps, flags) and pretrained.MEASURED_FILE (its
    figures). Other models there are removed with `replace_others`.
    Returns (shipped folders, names removed, names kept)."""
    shipped = []
    for record in self.ladder:
      source = self.rung_dir(record.quality)
      target = os.path.join(destination, rung(record.quality).name)
      os.makedirs(target, exist_ok=True)
      for name in (WEIGHTS_FILE, CONFIG_FILE):  # config last: it marks a model
        with open(os.path.join(source, name), "rb") as f:
          content = f.read()
        write_file_atomic(os.path.join(target, name),
                          lambda f, c=content: f.write(c), overwrite=True)
      if load_model(target).model_id.hex() != record.model_id:
        raise ValueError(f"{source} is not the model rung {record.quality} "
                         f"recorded ({record.model_id})")
      recipe = {k: v for k, v in dataclasses.asdict(record).items()
                if k != "test_sets"}
      measured = dict(record.test_sets, source=(
          f"{self.directory}/{STATE_FILE}, ladder rung {record.quality}: "
          "python -m experiments.campaign ladder (docs/campaign.md)"))
      for name, document in ((TRAINING_RECIPE, recipe),
                             (pretrained.MEASURED_FILE, measured)):
        text = json.dumps(document, indent=2) + "\n"
        write_file_atomic(os.path.join(target, name),
                          lambda f, t=text: f.write(t.encode()),
                          overwrite=True)
      shipped.append(target)
    names = {rung(record.quality).name for record in self.ladder}
    others = sorted(
        name for name in os.listdir(destination)
        if name not in names
        and os.path.exists(os.path.join(destination, name, CONFIG_FILE)))
    if replace_others:
      for name in others:
        shutil.rmtree(os.path.join(destination, name))
      return shipped, others, []
    return shipped, [], others

  def ladder_bd_rates(self):
    """BD-rates (%, PSNR) of the ladder's curve, {title: value}.

    Kodak against the published Ballé 2017 curve, and per test set against
    JPEG 2000 measured on the same images (`references`). Only where at
    least two rungs were measured on the set.
    """
    comparisons = [("kodak", "published Ballé 2017",
                    published_curve().psnr_rgb)]
    comparisons += [(name, "JPEG 2000", tuple(map(tuple, points)))
                    for name, points in sorted(self.references.items())]
    rates = {}
    for name, title, reference in comparisons:
      ours = [(r.test_sets[name]["bpp"], r.test_sets[name]["psnr_db"])
              for r in self.ladder if name in r.test_sets]
      if len(ours) >= 2:
        rates[f"{name} vs {title}"] = rd_plot.bd_rate(reference, ours)[0]
    return rates

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
    columns = _test_set_columns(self.legs)
    titles = [_test_set_title(column) for column in columns]
    titles = ["leg", "date", "steps", "Gpix (cumulative)",
              "wall h (cumulative)", "train loss",
              "validation bpp / PSNR dB"] + titles
    rows = ["| " + " | ".join(titles) + " |",
            "|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(columns)]
    for r in self.legs:
      figures = [_test_set_cell(r.test_sets, column) for column in columns]
      cells = [str(r.leg), r.date, f"{r.steps:,}",
               f"{r.gpix:.1f} ({r.cumulative_gpix:.1f})",
               f"{r.wall_time_s / 3600:.2f} "
               f"({r.cumulative_wall_time_s / 3600:.2f})",
               f"{r.train_loss:.4f}",
               f"{r.validation_bpp:.3f} / {r.validation_psnr_db:.2f}"]
      rows.append("| " + " | ".join(cells + figures) + " |")
    return "\n".join(rows)

  def ladder_table(self):
    """The ladder's rungs as a Markdown table, then its BD-rates.

    "steps" and "wall h" are the rung's own fine-tuning; "in all" adds the
    anchor's and its chain's training (rung_training)."""
    columns = _test_set_columns(self.ladder)
    titles = ["quality", "lambda", "N", "fine-tuned from", "steps", "wall h",
              "in all: Gpix / wall h", "validation bpp / PSNR dB"]
    titles += [_test_set_title(column) for column in columns]
    rows = ["| " + " | ".join(titles) + " |",
            "|" + "---:|" * len(titles)]
    for r in self.ladder:
      in_all = self.rung_training(r.quality)
      cells = [str(r.quality), f"{r.lmbda:g}", str(r.num_filters), r.parent,
               f"{r.steps:,}", f"{r.wall_time_s / 3600:.2f}",
               "-" if in_all is None else
               f"{in_all[0]:.1f} / {in_all[1] / 3600:.2f}",
               f"{r.validation_bpp:.3f} / {r.validation_psnr_db:.2f}"]
      cells += [_test_set_cell(r.test_sets, column) for column in columns]
      rows.append("| " + " | ".join(cells) + " |")
    rates = self.ladder_bd_rates()
    if rates:
      rows.append("")
      rows += [f"- BD-rate (PSNR), {title}: "
               + ("-" if not math.isfinite(value) else f"{value:+.1f} %")
               for title, value in rates.items()]
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


def _test_set_columns(records):
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


def _test_set_title(column):
  name, key = column
  return (f"{name} bpp / PSNR dB / MS-SSIM" if key is None else
          f"{name} PSNR gap to {GAP_TITLES[key]} dB")


def _test_set_cell(test_sets, column):
  """A record's cell of `column` ("-" where it has no figure)."""
  name, key = column
  figures = test_sets.get(name)
  if figures is None:
    return "-"
  if key is None:
    return pretrained.format_figures(figures)
  return "-" if figures.get(key) is None else f"{figures[key]:+.2f}"


def _gpix(steps, flags):
  """Training pixels (Gpix) of `steps` steps under `flags` ({name: value}
  of experiments.train flags with batchsize and patchsize)."""
  return steps * int(flags["batchsize"]) * int(flags["patchsize"]) ** 2 / 1e9


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


def _now():
  return datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y-%m-%d %H:%M UTC")


def _save_measured(model, directory, measure=None):
  """Saves `model` to `directory` (replacing it); returns measure(folder).

  The model is written and measured in a staging folder beside `directory`
  and renamed into place only when both succeeded.
  """
  parent = os.path.dirname(directory) or "."
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix=".staging-")
  try:
    model.save(staging, overwrite=True)
    figures = measure(staging) if measure else None
    old = None
    if os.path.exists(directory):
      old = directory + ".old"
      os.replace(directory, old)
    os.replace(staging, directory)
    if old:
      shutil.rmtree(old)
    return figures
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)


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
