"""Runs the training campaign one leg at a time (docs/campaign.md).

    python -m experiments.campaign leg --train_glob=TRAIN_DIR --max_time_s=7500
    python -m experiments.campaign end_leg --train_glob=TRAIN_DIR \
        --kodak=KODAK_DIR --holdout=HOLDOUT_DIR
    python -m experiments.campaign table
    python -m experiments.campaign plot \
        --output=docs/campaign_learning_curve.png

`leg` trains the next leg (experiments.train with the plan's flags, warm started
from campaign/anchor) into <work_dir>/leg-K; rerunning it resumes that leg. The
leg runs from a copy of the code taken when it starts (<work_dir>/leg-K/code):
AutoGraph reads a function's source file when it first traces it, so a run that
imports the working tree crashes hours in when that tree is edited beside it (it
happened in leg 1). Stop it early with SIGTERM (kill PID): it writes a
checkpoint. `end_leg` freezes the leg's latest checkpoint, replaces
campaign/anchor with its compact copy (balle.models.weight_storage), codes Kodak
and the held-out photographs with that copy, measures JPEG 2000 (OpenJPEG 9/7)
on the same images (experiments.baselines, cached in <work_dir>/baselines-<set>,
so later legs reuse it), and appends the leg to campaign/campaign.json with the
PSNR gaps to JPEG 2000 and (Kodak) to the published Ballé 2017 curve at the
anchor's bpp. `table` prints the leg log (and the ladder) as Markdown; `plot`
draws those gaps against cumulative training Gpix, one point per leg.

    python -m experiments.campaign ladder --train_glob=TRAIN_DIR \
        --rung_steps=2000 --max_time_s=7500 --kodak=KODAK_DIR \
        --holdout=HOLDOUT_DIR

    python -m experiments.campaign ship [--qualities=1,3,5] [--replace_shipped]
    python -m experiments.campaign compare --campaign_dir=campaign/bmshj2018 \
        --against=campaign

`ship` copies the made rungs (or those of --qualities), byte for byte, into
balle/pretrained with their records (recipe.json) and measured figures
(measured.json, read by `balle models`); --replace_shipped also deletes
shipped models of the campaign's family that are not shipped rungs.
`compare` prints the BD-rate of this campaign's ladder against another
family's on each test set both measured, with each ladder's training.

`ladder` makes the rate ladder of the campaign's family (balle.campaign.ladder):
the anchor becomes quality 5 as it is, then each missing rung is fine-tuned for
--rung_steps from its neighbour towards the anchor (4, 3, 2, 1, then 6, 7, 8),
frozen compactly in campaign/ladder/ and measured like an anchor. It stops when
the time budget is used up; rerunning it resumes the unfinished rung (same
machine) or restarts it (a fresh one) and goes on with the rest.
"""

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from balle import campaign as campaign_lib
from balle import evaluation
from balle.campaign import ladder
from balle.campaign import records as campaign_records
from balle.evaluation import rd_curves
from balle.io.safe_write import staged_directory
from experiments import SOURCE_PRETRAINED

flags.DEFINE_string("campaign_dir", "campaign", "Committed campaign state.")
flags.DEFINE_string("work_dir", "runs/campaign", "Checkpoints of the legs "
                    "(not committed).")
flags.DEFINE_multi_string("train_glob", [], "Training images (as for "
                          "experiments.train); the same in every leg.")
flags.DEFINE_float("max_time_s", 7500, "Training time budget of the leg.")
flags.DEFINE_string("kodak", "", "end_leg: Kodak folder to code the new "
                    "anchor on (empty: none).")
flags.DEFINE_string("holdout", "", "end_leg: folder of held-out photographs "
                    "to code it on (data/README.md; empty: none).")
flags.DEFINE_integer("rung_steps", 2000, "ladder: fine-tuning steps per "
                     "rung.")
flags.DEFINE_bool("dry_run", False, "leg: print the command only.")
flags.DEFINE_bool("replace_shipped", False, "ship: delete shipped models "
                  "of the campaign's family that are not shipped rungs.")
flags.DEFINE_list("qualities", [], "ship: the rungs to ship (default: every "
                  "made rung).")
flags.DEFINE_string("against", "", "compare: the other family's campaign "
                    "folder (e.g. campaign).")
flags.DEFINE_string("output", "docs/campaign_learning_curve.png",
                    "plot: the PNG to write (replaced if it exists).")
FLAGS = flags.FLAGS

ACTIONS = ("leg", "end_leg", "ladder", "ship", "table", "plot", "compare")


def _python_module(module, arguments, cwd=None):
  command = [sys.executable, "-m", module] + list(arguments)
  print(" ".join(command), flush=True)
  subprocess.run(command, check=True, cwd=cwd)


def _code_snapshot(leg_dir):
  """A copy of balle/ and experiments/ for the leg, made once per leg."""
  snapshot = os.path.join(leg_dir, "code")
  if not os.path.exists(snapshot):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with staged_directory(snapshot) as staging:
      for package in ("balle", "experiments"):
        shutil.copytree(os.path.join(root, package),
                        os.path.join(staging, package),
                        ignore=shutil.ignore_patterns("__pycache__"))
  return snapshot


# experiments.train flags whose values are (comma-separated) paths.
PATH_FLAGS = ("train_glob", "validation_glob", "init_from", "model_dir")


def _absolute_paths(flag):
  """--name=value with path values made absolute (the leg runs elsewhere)."""
  name, _, value = flag[2:].partition("=")
  if name not in PATH_FLAGS or not value:
    return flag
  return f"--{name}=" + ",".join(os.path.abspath(v) for v in value.split(","))


def _train(campaign, extra=()):
  """Runs the leg's experiments.train from its code snapshot."""
  leg_dir = os.path.abspath(campaign.leg_dir(FLAGS.work_dir))
  os.makedirs(leg_dir, exist_ok=True)
  flags_ = campaign.train_flags(FLAGS.work_dir, FLAGS.train_glob,
                                FLAGS.max_time_s)
  run_train(flags_ + list(extra), leg_dir)


def run_train(flags_, snapshot_dir):
  """experiments.train with `flags_`, from the code snapshot in
  `snapshot_dir` (paths made absolute: it runs in the snapshot)."""
  _python_module("experiments.train", [_absolute_paths(f) for f in flags_],
                 cwd=_code_snapshot(snapshot_dir))


def _jpeg2000(name, images):
  """Results document of JPEG 2000 9/7 on `images` (cached per image set)."""
  output_dir = os.path.join(FLAGS.work_dir, f"baselines-{name}")
  _python_module("experiments.baselines",
                 [f"--codecs={campaign_records.J2K_CODEC}", f"--images={images}",
                  f"--output_dir={output_dir}"])
  return evaluation.read_results(
      os.path.join(output_dir, f"{campaign_records.J2K_CODEC}.json"))


def _measure(model_dir, campaign):
  """{test set: figures_of_test_set(...)} of a model, whole files, with the
  gaps to JPEG 2000 and (Kodak) to the published curve of the campaign's
  family; keeps the JPEG 2000 points of each set in `campaign.references`."""
  figures = {}
  for name, images in (("kodak", FLAGS.kodak), ("holdout", FLAGS.holdout)):
    if not images:
      continue
    j2k = _jpeg2000(name, images)
    campaign.references[name] = [
        list(point) for point in rd_curves.curve_from_results(j2k).psnr_rgb]
    with tempfile.TemporaryDirectory() as output_dir:
      _python_module("experiments.evaluate",
                     [f"--models={model_dir}", f"--images={images}",
                      f"--output_dir={output_dir}"])
      with open(os.path.join(output_dir, "results.json")) as f:
        results = json.load(f)
    figures[name] = campaign_records.figures_of_test_set(
        results, j2k=j2k,
        published=campaign_records.published_curve(campaign.architecture)
        if name == "kodak" else None)
  return figures


def _ladder(campaign):
  """Makes the missing rungs of the ladder within --max_time_s."""
  measure = functools.partial(_measure, campaign=campaign)
  ladder_dir = os.path.abspath(os.path.join(FLAGS.work_dir,
                                            ladder.LADDER_DIR))
  deadline = time.time() + FLAGS.max_time_s
  while (target := campaign.next_rung()) is not None:
    if target.quality == ladder.ANCHOR_QUALITY:
      record = campaign.end_rung(target.quality, measure=measure)
      print(f"rung {target.quality}: the anchor, {record.model_id}", flush=True)
      continue
    remaining = deadline - time.time()
    if remaining < 60:
      print("time budget used up; rerun `ladder` to go on", flush=True)
      return
    flags_ = campaign.rung_train_flags(target.quality, FLAGS.work_dir,
                                       FLAGS.train_glob, FLAGS.rung_steps)
    run_train(flags_ + [f"--max_time_s={remaining:.0f}"], ladder_dir)
    final = os.path.join(FLAGS.work_dir, ladder.LADDER_DIR,
                         target.name, "final")
    with open(os.path.join(final, campaign_records.TRAINING_RECIPE)) as f:
      steps = json.load(f)["steps"]
    if steps < FLAGS.rung_steps:
      print(f"rung {target.quality} stopped at step {steps} of "
            f"{FLAGS.rung_steps} (time budget); rerun `ladder` to resume it",
            flush=True)
      return
    record = campaign.end_rung(target.quality, final, flags_, measure=measure)
    print(f"rung {target.quality} recorded: {record.model_id}", flush=True)
  print(campaign.ladder_table())
  print(f"ladder complete; commit {FLAGS.campaign_dir}/")


def _ship(campaign):
  """Ships the made rungs (--qualities) into the source tree's
  balle/pretrained."""
  qualities = [int(q) for q in FLAGS.qualities] or None
  shipped, removed, kept = campaign.ship(SOURCE_PRETRAINED,
                                         replace_others=FLAGS.replace_shipped,
                                         qualities=qualities)
  for folder in shipped:
    print(f"shipped {folder}")
  for name in removed:
    print(f"removed {name}")
  if kept:
    print(f"still shipped, not rungs: {', '.join(kept)} "
          "(--replace_shipped removes them)")


def main(argv):
  if len(argv) != 2 or argv[1] not in ACTIONS:
    raise app.UsageError(f"one action: {' | '.join(ACTIONS)}")
  campaign = campaign_lib.Campaign(FLAGS.campaign_dir)
  if argv[1] == "table":
    print(campaign.markdown_table())
    print("\nProjection to 0 dB from the learning curves "
          "(campaign_records.projection):")
    print("\n".join(campaign.projection_lines()))
    if campaign.ladder:
      print("\n" + campaign.ladder_table())
    return
  if argv[1] == "ship":
    _ship(campaign)
    return
  if argv[1] == "compare":
    if not FLAGS.against:
      raise app.UsageError("compare needs --against=<other campaign folder>")
    print("\n".join(campaign.ladder_comparison(
        campaign_lib.Campaign(FLAGS.against))))
    return
  if argv[1] == "plot":
    try:
      print(f"wrote {campaign.plot_learning_curve(FLAGS.output)}")
    except ValueError as error:
      raise SystemExit(f"plot: {error}") from None
    return
  if not FLAGS.train_glob:
    raise app.UsageError("--train_glob is required")
  train_flags = campaign.train_flags(FLAGS.work_dir, FLAGS.train_glob,
                                     FLAGS.max_time_s)
  if argv[1] == "leg":
    if FLAGS.dry_run:
      print(" ".join(["python -m experiments.train"] + train_flags))
    else:
      _train(campaign)
    return
  for images in (FLAGS.kodak, FLAGS.holdout):
    if images:  # fail before training or finalizing, not after
      evaluation.list_image_files(images)
  if argv[1] == "ladder":
    _ladder(campaign)
    return
  leg_dir = campaign.leg_dir(FLAGS.work_dir)
  _train(campaign, ["--finalize_only"])
  used_flags = [f for f in train_flags if not f.startswith("--max_time_s=")]
  record = campaign.end_leg(
      os.path.join(leg_dir, "final"), used_flags,
      campaign_lib.final_training_loss(leg_dir),
      measure=functools.partial(_measure, campaign=campaign))
  print(campaign.markdown_table())
  print(f"leg {record.leg} recorded; commit {FLAGS.campaign_dir}/")


if __name__ == "__main__":
  app.run(main)
