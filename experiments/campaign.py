"""Runs the training campaign one leg at a time (docs/campaign.md).

    python -m experiments.campaign leg --train_glob=TRAIN_DIR --max_time_s=7500
    python -m experiments.campaign end_leg --train_glob=TRAIN_DIR --kodak=KODAK_DIR \
        --holdout=HOLDOUT_DIR
    python -m experiments.campaign table

`leg` trains the next leg (experiments.train with the plan's flags, warm
started from campaign/anchor) into <work_dir>/leg-K; rerunning it resumes
that leg. The leg runs from a copy of the code taken when it starts
(<work_dir>/leg-K/code): AutoGraph reads a function's source file when it
first traces it, so a run that imports the working tree crashes hours in
when that tree is edited beside it (it happened in leg 1). Stop it early with SIGTERM (kill PID): it writes a checkpoint.
`end_leg` freezes the leg's latest checkpoint, replaces campaign/anchor with
its float16 copy, codes Kodak and the held-out photographs with that copy
and appends the leg to
campaign/campaign.json. `table` prints the leg log as Markdown.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from balle import campaign as campaign_lib

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
flags.DEFINE_bool("dry_run", False, "leg: print the command only.")
FLAGS = flags.FLAGS

ACTIONS = ("leg", "end_leg", "table")


def _python_module(module, arguments, cwd=None):
  command = [sys.executable, "-m", module] + list(arguments)
  print(" ".join(command), flush=True)
  subprocess.run(command, check=True, cwd=cwd)


def _code_snapshot(leg_dir):
  """A copy of balle/ and experiments/ for the leg, made once per leg."""
  snapshot = os.path.join(leg_dir, "code")
  if not os.path.exists(snapshot):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    staging = snapshot + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    for package in ("balle", "experiments"):
      shutil.copytree(os.path.join(root, package),
                      os.path.join(staging, package),
                      ignore=shutil.ignore_patterns("__pycache__"))
    os.replace(staging, snapshot)
  return snapshot


def _train(campaign, extra=()):
  """Runs the leg's experiments.train from its code snapshot."""
  leg_dir = campaign.leg_dir(os.path.abspath(FLAGS.work_dir))
  os.makedirs(leg_dir, exist_ok=True)
  absolute = campaign_lib.Campaign(os.path.abspath(FLAGS.campaign_dir))
  flags_ = absolute.train_flags(
      os.path.abspath(FLAGS.work_dir),
      [os.path.abspath(p) for p in FLAGS.train_glob], FLAGS.max_time_s)
  if not campaign.legs:  # the plan's init_from is relative to the project
    flags_ = [f"--init_from={os.path.abspath(campaign.plan['init_from'])}"
              if f.startswith("--init_from=") else f for f in flags_]
  _python_module("experiments.train", flags_ + list(extra),
                 cwd=_code_snapshot(leg_dir))


def _measure(model_dir):
  """{test set: {"bpp", "psnr_db", "ms_ssim"}} of a model, whole files."""
  figures = {}
  for name, images in (("kodak", FLAGS.kodak), ("holdout", FLAGS.holdout)):
    if not images:
      continue
    with tempfile.TemporaryDirectory() as output_dir:
      _python_module("experiments.evaluate",
                     [f"--models={model_dir}", f"--images={images}",
                      f"--output_dir={output_dir}"])
      with open(os.path.join(output_dir, "results.json")) as f:
        results = json.load(f)["results"]
    figures[name] = {"bpp": results["bpp"][0],
                     "psnr_db": results["psnr-rgb"][0],
                     "ms_ssim": results["ms-ssim-rgb"][0]}
  return figures


def main(argv):
  if len(argv) != 2 or argv[1] not in ACTIONS:
    raise app.UsageError(f"one action: {' | '.join(ACTIONS)}")
  campaign = campaign_lib.Campaign(FLAGS.campaign_dir)
  if argv[1] == "table":
    print(campaign.markdown_table())
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
  leg_dir = campaign.leg_dir(FLAGS.work_dir)
  _train(campaign, ["--finalize_only"])
  used_flags = [f for f in train_flags if not f.startswith("--max_time_s=")]
  record = campaign.end_leg(
      os.path.join(leg_dir, "final"), used_flags,
      campaign_lib.final_training_loss(leg_dir),
      measure=_measure)
  print(campaign.markdown_table())
  print(f"leg {record.leg} recorded; commit {FLAGS.campaign_dir}/")


if __name__ == "__main__":
  app.run(main)
