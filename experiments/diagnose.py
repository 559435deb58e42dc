"""The campaign's diagnosis (balle/campaign/diagnosis.py): arms fine-tuned from
the anchor, measured on the yardstick.

  # once: fix the yardstick (written to campaign/yardstick.txt, committed)
  python -m experiments.diagnose yardstick --train_glob=../shared/data/train \
      --train_glob=data/imagenet/train
  # arms one after the other (NAME:SEED), each recorded in
  # campaign/diagnosis.json as it ends; rerunning skips recorded arms and
  # resumes an unfinished one from its checkpoint
  python -m experiments.diagnose run --arms=base:1,base:2,anneal:1 \
      --steps=2000 --train_glob=../shared/data/train \
      --train_glob=data/imagenet/train
  python -m experiments.diagnose table

Each arm trains with experiments.train from a copy of the code taken when
the arm starts (`experiments.campaign`), so the working tree may change
beside it.
"""

import json
import math
import os
import time

from absl import app
from absl import flags

from balle import campaign as campaign_lib
from balle import data
from balle.campaign import diagnosis
from balle.campaign import records as campaign_records
from balle.models import compression_model
from experiments import campaign as campaign_runner

flags.DEFINE_list("arms", [], "run: arms as NAME:SEED "
                  "(balle.campaign.diagnosis.ARMS).")
flags.DEFINE_integer("steps", 2000, "run: fine-tuning steps of every arm "
                     "(0: measure the anchor itself as arm base).")
flags.DEFINE_float("lmbda", 0.0, "run: lambda of the arms (0: the plan's).")
FLAGS = flags.FLAGS
ACTIONS = ("yardstick", "run", "table")


def _lmbda(campaign):
  return FLAGS.lmbda or campaign.plan["train_flags"]["lmbda"]


def _arm_flags(campaign, name, seed, model_dir, yardstick):
  plan = dict(campaign.plan["train_flags"])
  plan.update(diagnosis.arm(name).flags)
  plan["lmbda"] = _lmbda(campaign)
  if plan.get("init_latent_scale") == "auto":  # the anchor's lambda -> this
    plan["init_latent_scale"] = round(math.sqrt(
        float(plan["lmbda"]) / campaign.plan["train_flags"]["lmbda"]), 4)
  plan.update(max_steps=FLAGS.steps, validate_every=0, log_every=100,
              checkpoint_every=500, max_time_s=0,
              validation_glob=",".join(yardstick))
  return plan, ([f"--{k}={v}" for k, v in plan.items()] +
                [f"--train_glob={p}" for p in FLAGS.train_glob] +
                [f"--init_from={campaign.anchor_dir}", f"--seed={seed}",
                 f"--model_dir={model_dir}"])


def _run_arm(campaign, record_book, name, seed, yardstick):
  """Trains the arm (--steps=0: none, the anchor itself is measured) and
  records it with its yardstick figures."""
  model_dir = os.path.join(
      FLAGS.work_dir, "diagnosis",
      f"{name}-s{seed}-{FLAGS.steps}-lambda{_lmbda(campaign):g}")
  plan, train_flags = _arm_flags(campaign, name, seed, model_dir, yardstick)
  if FLAGS.steps:
    os.makedirs(model_dir, exist_ok=True)
    campaign_runner.run_train(train_flags, os.path.abspath(model_dir))
    final = os.path.join(model_dir, "final")
    with open(os.path.join(final, campaign_records.TRAINING_RECIPE)) as f:
      recipe = json.load(f)
  else:
    final = campaign.anchor_dir
    recipe = {"wall_time_s": 0.0}
  model = compression_model.load_model(final)
  recipe["model_id"] = model.model_id.hex()
  images, _ = data.load_images(yardstick, 0, model.config.channels)
  images = [data.crop_to_multiple(a, model.downsampling_factor)
            for a in images]
  figures = diagnosis.measure(model, images, float(plan["lmbda"]))
  plan.pop("validation_glob")
  record = diagnosis.record(name, seed, FLAGS.steps, float(plan["lmbda"]),
                            plan, recipe, figures)
  record_book.add(record)
  print(f"arm {name} seed {seed}: {figures}", flush=True)


def main(argv):
  if len(argv) != 2 or argv[1] not in ACTIONS:
    raise app.UsageError(f"one action: {' | '.join(ACTIONS)}")
  record_book = diagnosis.Diagnosis(FLAGS.campaign_dir)
  if argv[1] == "table":
    print(record_book.markdown_table())
    return
  if not FLAGS.train_glob:
    raise app.UsageError("--train_glob is required")
  if argv[1] == "yardstick":
    files = diagnosis.choose_yardstick(data.expand_patterns(FLAGS.train_glob))
    print(f"wrote {diagnosis.write_yardstick(FLAGS.campaign_dir, files)}: "
          f"{len(files)} images")
    return
  campaign = campaign_lib.Campaign(FLAGS.campaign_dir)
  yardstick = diagnosis.read_yardstick(FLAGS.campaign_dir)
  runs = []
  for item in FLAGS.arms:
    name, _, seed = item.partition(":")
    diagnosis.arm(name)  # unknown names fail before any training
    runs.append((name, int(seed or 1)))
  deadline = time.time() + FLAGS.max_time_s
  for name, seed in runs:
    if record_book.find(name, seed, FLAGS.steps, _lmbda(campaign)):
      print(f"arm {name} seed {seed}: recorded already", flush=True)
      continue
    if time.time() > deadline:
      print("time budget used up; rerun to go on", flush=True)
      return
    _run_arm(campaign, record_book, name, seed, yardstick)
  print(record_book.markdown_table())


if __name__ == "__main__":
  app.run(main)
