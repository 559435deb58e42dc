"""The rate ladder of a campaign: one compact model per quality 1..8 of
`balle compress`, each fine-tuned from its neighbour towards the campaign's
anchor (issue 11), recorded in campaign.json like a leg and shipped into
balle/pretrained. Each model family has its own ladder (`ladder_of`).
"""

import dataclasses
import json
import math
import os
import shutil

from balle import pretrained
from balle.campaign.records import ANCHOR
from balle.campaign.records import gpix
from balle.campaign.records import now
from balle.campaign.records import portable_flags
from balle.campaign.records import LIKE_FOR_LIKE_POINTS
from balle.campaign.records import published_curve
from balle.campaign.records import published_title
from balle.campaign.records import save_measured
from balle.campaign.records import STATE_FILE
from balle.campaign.records import test_set_cell
from balle.campaign.records import test_set_columns
from balle.campaign.records import test_set_title
from balle.campaign.records import TRAINING_RECIPE
from balle.evaluation.bd_rate import bd_rate
from balle.io.safe_write import write_file_atomic
from balle.models.compression_model import CONFIG_FILE
from balle.models.compression_model import load_model
from balle.models.compression_model import ModelConfig
from balle.models.compression_model import WEIGHTS_FILE


@dataclasses.dataclass(frozen=True)
class Rung:
  """One model of the rate ladder: `quality` 1..8 of `balle compress`."""
  quality: int
  lmbda: float
  num_filters: int
  latent_channels: int = 0  # M; 0: num_filters
  architecture: str = "bls2017"

  @property
  def config(self):
    return ModelConfig(lmbda=self.lmbda, num_filters=self.num_filters,
                       latent_channels=self.latent_channels,
                       architecture=self.architecture)

  @property
  def name(self):
    """The rung's model name (its ModelConfig's default name)."""
    return self.config.name


ANCHOR_QUALITY = 5  # the anchor is this rung (its lambda and N)
# The qualities of `balle compress` (issue 11's eight rates), all at the
# anchor's N = 128. Peers use N = 192 above quality 5, but the anchor widened to
# 192 (balle.models.widen) spends its first thousands of steps silencing the
# fresh channels: on 2026-11-29 rung 6 made that way (1,500 steps) coded Kodak
# at 2.049 bpp / 35.37 dB, ~5 dB under the published curve (docs/campaign.md,
# "Making the ladder").
LADDER = tuple(Rung(quality, lmbda, 128)
               for quality, lmbda in enumerate(pretrained.QUALITY_LAMBDAS,
                                               start=1))
# The hyperprior's ladder: the same eight lambdas, all at its anchor's
# N = 128 / M = 192 (the paper's lower-rate size) until a high-rate anchor
# of N = 192 / M = 320 exists to fine-tune qualities 6-8 from.
HYPERPRIOR_LADDER = tuple(
    Rung(quality, lmbda, 128, 192, "bmshj2018")
    for quality, lmbda in enumerate(pretrained.QUALITY_LAMBDAS, start=1))


def ladder_of(architecture):
  """The rungs of `architecture`'s ladder."""
  ladders = {"bls2017": LADDER, "bmshj2018": HYPERPRIOR_LADDER}
  if architecture not in ladders:
    raise ValueError(f"no ladder for architecture {architecture!r}")
  return ladders[architecture]


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


def rung(quality, architecture="bls2017"):
  """The rung of `quality` (1..8) in `architecture`'s ladder."""
  rungs = ladder_of(architecture)
  for candidate in rungs:
    if candidate.quality == quality:
      return candidate
  raise ValueError(f"no ladder rung of quality {quality}; qualities are "
                   f"{[r.quality for r in rungs]}")


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
  # The model's training in all when the rung was made: the anchor's (seed
  # model and legs) and each fine-tune along its chain, so that it stands
  # when the anchor moves on. None in records made before it was stored.
  in_all_gpix: float = None
  in_all_wall_time_s: float = None


class LadderMixin:
  """The ladder part of a balle.campaign.Campaign (its `plan`, `legs`,
  `ladder` records, `directory`, `anchor_dir` and `save`)."""

  @property
  def architecture(self):
    """The model family of the campaign's plan."""
    return self.plan["train_flags"].get("architecture", "bls2017")

  def rung(self, quality):
    """The rung of `quality` in this campaign's family's ladder."""
    return rung(quality, self.architecture)

  def rung_dir(self, quality):
    """Committed folder of rung `quality`'s compact model."""
    return os.path.join(self.directory, LADDER_DIR, self.rung(quality).name)

  def next_rung(self):
    """The next rung to make, in LADDER_ORDER; None when all are made."""
    made = {record.quality for record in self.ladder}
    for quality in LADDER_ORDER:
      if quality not in made:
        return self.rung(quality)
    return None

  def rung_train_flags(self, quality, work_dir, train_globs, steps):
    """The experiments.train flags fine-tuning rung `quality` from its parent.

    The plan's flags changed by RUNG_RECIPE and then by the plan's own
    `rung_flags` (e.g. smaller patches for a slower family), with the rung's
    lambda and N,
    `steps` steps, one validation at the end, warm-started from the parent
    rung's committed compact model (widened by the trainer where N grows),
    seed 100 + quality.
    """
    target = self.rung(quality)
    parent = parent_quality(quality)
    if parent is None:
      raise ValueError(f"rung {quality} is the anchor itself, not trained")
    if parent not in {record.quality for record in self.ladder}:
      raise ValueError(f"rung {quality} starts from rung {parent}, which is "
                       "not made yet")
    plan = dict(self.plan["train_flags"], **RUNG_RECIPE)
    plan.update(self.plan.get("rung_flags", {}))
    plan.update(lmbda=target.lmbda,
                num_filters=target.num_filters, max_steps=steps,
                validate_every=steps)
    if target.latent_channels:
      plan["latent_channels"] = target.latent_channels
    flags = [f"--{name}={value}" for name, value in plan.items()]
    flags += [f"--train_glob={pattern}" for pattern in train_globs]
    flags += [f"--init_from={self.rung_dir(parent)}",
              f"--seed={100 + quality}",
              f"--model_dir={os.path.join(work_dir, LADDER_DIR, target.name)}"]
    return flags

  def end_rung(self, quality, final_dir=None, flags=(), measure=None):
    """Records rung `quality`: its frozen model in `final_dir`, or for the
    anchor's rung (final_dir None) the anchor as it is.

    The compact copy goes to rung_dir(quality) and is measured there by
    `measure` (as in end_leg); the anchor's rung reuses the last leg's
    figures when the anchor is that leg's model.
    """
    target = self.rung(quality)
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
      parent, test_sets = self.rung(parent_quality(quality)).name, {}
    if model.config.name != target.name or (
        model.config.num_filters, model.config.num_latent_channels) != (
            target.num_filters, target.config.num_latent_channels):
      raise ValueError(
          f"rung {quality} is {target.name} (lambda {target.lmbda}, N "
          f"{target.num_filters}, M {target.config.num_latent_channels}), "
          f"the model {model.config.name} (lambda {model.config.lmbda}, N "
          f"{model.config.num_filters}, M "
          f"{model.config.num_latent_channels})")
    model = model.compact_copy()
    test_sets = save_measured(model, self.rung_dir(quality),
                               measure) or test_sets
    record = RungRecord(
        quality=quality, lmbda=target.lmbda, num_filters=target.num_filters,
        date=now(), parent=parent, steps=int(recipe["steps"]),
        wall_time_s=recipe["wall_time_s"],
        validation_bpp=recipe["validation_bpp"],
        validation_psnr_db=recipe["validation_psnr_db"], test_sets=test_sets,
        model_id=model.model_id.hex(), flags=portable_flags(flags))
    self.ladder = [r for r in self.ladder if r.quality != quality] + [record]
    in_all = self.rung_training(quality)
    if in_all:
      record = dataclasses.replace(record, in_all_gpix=in_all[0],
                                   in_all_wall_time_s=in_all[1])
      self.ladder[-1] = record
    self.ladder.sort(key=lambda r: r.quality)
    self.save()
    return record

  def rung_training(self, quality):
    """(Gpix, wall seconds) of all the training rung `quality`'s model has
    had: as recorded when the rung was made, or for older records the
    anchor's (seed model and legs) and each fine-tuning along its chain.
    None when the anchor's rung is not the model of a recorded leg."""
    record = {r.quality: r for r in self.ladder}[quality]
    if record.in_all_gpix is not None:
      return record.in_all_gpix, record.in_all_wall_time_s
    if quality == ANCHOR_QUALITY:
      legs = [leg for leg in self.legs if leg.model_id == record.model_id]
      return ((legs[0].cumulative_gpix, legs[0].cumulative_wall_time_s)
              if legs else None)
    before = self.rung_training(parent_quality(quality))
    if before is None:
      return None
    own = gpix(record.steps,
               dict(flag[2:].split("=", 1) for flag in record.flags))
    return before[0] + own, before[1] + record.wall_time_s

  def ship(self, destination, replace_others=False, qualities=None):
    """Copies the made rungs of `qualities` (None: all) into `destination`
    (a balle/pretrained folder) as <rung name>/: its config.json and
    weights.npz byte for byte (the files that were measured, stored once by
    git), recipe.json (the rung's record: parent, steps, flags) and
    pretrained.MEASURED_FILE (its figures). Other models of the ladder's
    family there are removed with `replace_others`; other families' are
    never touched. Returns (shipped folders, names removed, names kept)."""
    records = [r for r in self.ladder
               if qualities is None or r.quality in qualities]
    missing = sorted(set(qualities or ()) - {r.quality for r in records})
    if missing:
      raise ValueError(f"rungs {missing} are not made")
    shipped = []
    for record in records:
      source = self.rung_dir(record.quality)
      target = os.path.join(destination, self.rung(record.quality).name)
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
    names = {self.rung(record.quality).name for record in records}
    others = sorted(
        name for name in os.listdir(destination)
        if name not in names
        and os.path.exists(os.path.join(destination, name, CONFIG_FILE))
        and pretrained.architecture_of(os.path.join(destination, name))
        == self.architecture)
    if replace_others:
      for name in others:
        shutil.rmtree(os.path.join(destination, name))
      return shipped, others, []
    return shipped, [], others

  def ladder_curve(self, name):
    """((bpp, PSNR dB), ...) of the rungs measured on test set `name`."""
    return [(r.test_sets[name]["bpp"], r.test_sets[name]["psnr_db"])
            for r in self.ladder if name in r.test_sets]

  def ladder_bd_rates(self):
    """BD-rates (%, PSNR) of the ladder's curve, {title: value}.

    Kodak against the published curve of the family's paper (and against
    its points of models with this project's N = 128, like for like), and
    per test set against JPEG 2000 measured on the same images
    (`references`). Only where at least two rungs were measured on the set.
    """
    published = published_curve(self.architecture)
    comparisons = [("kodak", f"published {published_title(published)}",
                    published.psnr_rgb)]
    if self.architecture in LIKE_FOR_LIKE_POINTS:
      count = LIKE_FOR_LIKE_POINTS[self.architecture]
      comparisons.append(
          ("kodak", f"published {published_title(published)}, its N = 128 "
           "points", published.psnr_rgb[:count]))
    comparisons += [(name, "JPEG 2000", tuple(map(tuple, points)))
                    for name, points in sorted(self.references.items())]
    rates = {}
    for name, title, reference in comparisons:
      ours = self.ladder_curve(name)
      if len(ours) >= 2:
        rates[f"{name} vs {title}"] = bd_rate(reference, ours)[0]
    return rates

  def ladder_comparison(self, other):
    """This ladder against `other`'s (another family's campaign), as
    Markdown lines: per test set both measured, the BD-rate (%, PSNR) of
    this curve against the other's, and each ladder's training in all
    (rung_training: Gpix and wall hours, least to most over its rungs)."""
    lines = []
    names = [{name for r in c.ladder for name in r.test_sets}
             for c in (self, other)]
    for name in sorted(names[0] & names[1],
                       key=lambda name: (name != "kodak", name)):
      rate, overlap = bd_rate(other.ladder_curve(name),
                              self.ladder_curve(name))
      lines.append(f"- {name}: BD-rate (PSNR) of the {self.architecture} "
                   f"ladder against the {other.architecture} ladder: "
                   + ("-" if not math.isfinite(rate) else f"{rate:+.1f} %")
                   + f" ({overlap:.0%} of the PSNR range overlaps)")
    for c in (self, other):
      spent = [t for t in (c.rung_training(r.quality) for r in c.ladder)
               if t is not None]
      if spent:
        gpix_, hours = [sorted(v) for v in zip(*spent)]
        lines.append(
            f"- {c.architecture} ladder ({len(c.ladder)} rungs), training in "
            f"all per rung: {gpix_[0]:.1f}-{gpix_[-1]:.1f} Gpix, "
            f"{hours[0] / 3600:.2f}-{hours[-1] / 3600:.2f} wall h")
    return lines

  def ladder_table(self):
    """The ladder's rungs as a Markdown table, then its BD-rates.

    "steps" and "wall h" are the rung's own fine-tuning; "in all" adds the
    anchor's and its chain's training (rung_training)."""
    columns = test_set_columns(self.ladder)
    titles = ["quality", "lambda", "N / M", "fine-tuned from", "steps",
              "wall h",
              "in all: Gpix / wall h", "validation bpp / PSNR dB"]
    titles += [test_set_title(column) for column in columns]
    rows = ["| " + " | ".join(titles) + " |",
            "|" + "---:|" * len(titles)]
    for r in self.ladder:
      in_all = self.rung_training(r.quality)
      latents = self.rung(r.quality).config.num_latent_channels
      cells = [str(r.quality), f"{r.lmbda:g}", f"{r.num_filters} / {latents}",
               r.parent,
               f"{r.steps:,}", f"{r.wall_time_s / 3600:.2f}",
               "-" if in_all is None else
               f"{in_all[0]:.1f} / {in_all[1] / 3600:.2f}",
               f"{r.validation_bpp:.3f} / {r.validation_psnr_db:.2f}"]
      cells += [test_set_cell(r.test_sets, column) for column in columns]
      rows.append("| " + " | ".join(cells) + " |")
    rates = self.ladder_bd_rates()
    if rates:
      rows.append("")
      rows += [f"- BD-rate (PSNR), {title}: "
               + ("-" if not math.isfinite(value) else f"{value:+.1f} %")
               for title, value in rates.items()]
    return "\n".join(rows)
