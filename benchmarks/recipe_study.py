"""Controlled training-recipe runs: same start, steps, seed and data per arm.

    python benchmarks/recipe_study.py --init_from=campaign/anchor \
        --train_glob=../shared/data/train --train_glob=data/imagenet/train \
        --validation_glob=A.jpg,B.jpg,... --steps=1500 --work_dir=runs/study

Every arm is one `python -m experiments.train` run with the common flags
below plus its own; the printed table gives each arm's validation (real
coding of the validation images into whole .balle files, from the run's
final/recipe.json) and its mean training loss over the last third of the
steps (from the run's metrics log). Arms whose final/recipe.json already
exists in --work_dir are not rerun, so an interrupted study resumes.
"""

import json
import os
import shlex
import subprocess
import sys

from absl import app, flags

from balle import campaign

ARMS = {
    "lr1e-4": ["--learning_rate=0.0001"],
    "lr5e-4": ["--learning_rate=0.0005"],
    "prior_lr_x10": ["--learning_rate=0.0001", "--prior_lr_scale=10"],
    "ema0.999": ["--learning_rate=0.0001", "--ema_decay=0.999"],
    "lr1e-4_seed8": ["--learning_rate=0.0001", "--seed=8"],
    # g_s alone on rounded latents: g_a and the prior are frozen, so the
    # bpp is the start's and any PSNR change is the arm's gain.
    "decoder_rounded": ["--learning_rate=0.0001",
                        "--finetune_decoder_rounded"],
}

flags.DEFINE_string("init_from", None, "Model folder every arm starts from.")
flags.DEFINE_multi_string("train_glob", None, "Training images.")
flags.DEFINE_string("validation_glob", None, "Validation images (comma list).")
flags.DEFINE_integer("steps", 1500, "Steps per arm.")
flags.DEFINE_float("lmbda", 0.025, "Lambda of every arm.")
flags.DEFINE_list("arms", list(ARMS), f"Arms to run, of {', '.join(ARMS)}.")
flags.DEFINE_string("work_dir", "runs/study", "One model_dir per arm here.")
flags.mark_flags_as_required(["init_from", "train_glob", "validation_glob"])
FLAGS = flags.FLAGS


def common_flags():
  return [f"--lmbda={FLAGS.lmbda}", "--num_filters=128", "--patchsize=256",
          "--batchsize=8", "--lr_schedule=constant", "--lr_warmup_steps=200",
          "--clip_norm=1.0", f"--max_steps={FLAGS.steps}",
          f"--validate_every={FLAGS.steps}",
          f"--checkpoint_every={FLAGS.steps}", "--log_every=250",
          f"--validation_glob={FLAGS.validation_glob}",
          f"--init_from={FLAGS.init_from}", "--seed=7"] + [
              f"--train_glob={g}" for g in FLAGS.train_glob]


def run_arm(name):
  model_dir = os.path.join(FLAGS.work_dir, name)
  recipe = os.path.join(model_dir, "final", "recipe.json")
  if not os.path.exists(recipe):
    command = ([sys.executable, "-m", "experiments.train"] + common_flags() +
               ARMS[name] + [f"--model_dir={model_dir}"])
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, check=True)
  with open(recipe) as f:
    result = json.load(f)
  loss = campaign.final_training_loss(model_dir, last_steps=FLAGS.steps // 3)
  return result["validation_bpp"], result["validation_psnr_db"], loss


def main(argv):
  del argv
  unknown = set(FLAGS.arms) - set(ARMS)
  if unknown:
    raise app.UsageError(f"unknown arms {sorted(unknown)}; known: {list(ARMS)}")
  rows = [(name, *run_arm(name)) for name in FLAGS.arms]
  print(f"\ncommon flags: {' '.join(common_flags())}\n")
  print("| arm | its flags | validation bpp | validation PSNR dB | "
        "training loss, last third |")
  print("|---|---|---:|---:|---:|")
  for name, bpp, psnr, loss in rows:
    print(f"| {name} | `{' '.join(ARMS[name])}` | {bpp:.4f} | {psnr:.2f} | "
          f"{loss:.4f} |")


if __name__ == "__main__":
  app.run(main)
