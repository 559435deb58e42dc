"""Trains one rate of the factorized-prior model (flags over balle/training.py).

  python -m experiments.train --lmbda=0.0130 --num_filters=128 \
      --train_glob=TRAIN_DIR --model_dir=runs/bls2017-0.0130 \
      --max_time_s=2600 --max_checkpoints=30

The defaults are the recipe that won the budget study in benchmarks/README.md:
8x128² patches, Adam 1e-3 with 200 warm-up steps, 1e-4 for the last 20 % of
the budget, transforms in mixed bfloat16 where the CPU supports it.

Rerunning the same command resumes from the latest checkpoint (weights, Adam
state, step, schedule, elapsed time). Once --max_steps or --max_time_s is
reached the frozen model goes to <model_dir>/final with recipe.json; rerunning
then only redoes that. --finalize_only freezes the latest checkpoint of an
unfinished run. Other rates: --init_from=<model_dir>/final --lmbda=... with a
new --model_dir (warm start of g_a, g_s and the prior).
"""

import os

from absl import app
from absl import flags

flags.DEFINE_float("lmbda", 0.0130, "Rate-distortion weight lambda: loss = "
                   "bpp + lambda * MSE (0..255 scale).")
flags.DEFINE_integer("num_filters", 128, "Filters N per layer (paper: 192 "
                     "RGB; 128 trains faster per CPU-hour).")
flags.DEFINE_enum("gdn_form", "paper", ["paper", "simplified"], "GDN form.")
flags.DEFINE_integer("patchsize", 128, "Side of the random training crops.")
flags.DEFINE_integer("batchsize", 8, "Patches per step.")
flags.DEFINE_multi_string("train_glob", None,
                          "Training images: glob patterns or folders; "
                          "repeat the flag or separate with commas.")
flags.DEFINE_string("model_dir", None, "Checkpoints, summaries, final model.")
flags.DEFINE_string("final_dir", "", "Where to save the frozen model "
                    "(default <model_dir>/final).")
flags.DEFINE_integer("max_steps", 100_000, "Step budget.")
flags.DEFINE_float("max_time_s", 0, "Training wall-time budget in seconds, "
                   "summed over resumed sessions (0: none).")
flags.DEFINE_float("learning_rate", 1e-3, "Initial Adam learning rate.")
flags.DEFINE_integer("lr_warmup_steps", 200, "Linear warm-up of the rate over "
                     "the first steps.")
flags.DEFINE_enum("lr_schedule", "steps", ["constant", "steps", "plateau"],
                  "steps: --lr_values from --lr_boundaries on; plateau: "
                  "divide by 10 when the loss stops improving (paper).")
flags.DEFINE_list("lr_boundaries", ["0.8"], "Steps where the rate changes; a "
                  "value < 1 is a fraction of the step or time budget.")
flags.DEFINE_list("lr_values", ["1e-4"], "Rates from each boundary on.")
flags.DEFINE_integer("plateau_window", 1000, "Steps per loss average.")
flags.DEFINE_integer("plateau_patience", 3, "Windows without improvement "
                     "before dividing the rate by 10.")
flags.DEFINE_float("plateau_min_improvement", 0.005, "Relative improvement "
                   "that counts.")
flags.DEFINE_float("plateau_min_lr", 1e-6, "Stop when the rate would fall "
                   "below this.")
flags.DEFINE_float("clip_norm", 0.0, "Clip gradients to this global norm "
                   "(0: no clipping).")
flags.DEFINE_float("divergence_factor", 10.0, "A loss above this many times "
                   "its recent average for 20 steps in a row counts as a "
                   "blow-up: the run rolls back to its last checkpoint and "
                   "divides the learning rate by 10 (0: off).")
flags.DEFINE_integer("max_rollbacks", 3, "Rollbacks before a blow-up stops "
                     "the run with an error.")
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16"],
                  "Arithmetic of the transforms while training; auto: "
                  "mixed_bfloat16 on CPUs with avx512_bf16/amx_bf16, else "
                  "float32. Weights and the saved model are float32.")
flags.DEFINE_string("init_from", "", "Saved model dir to warm-start from "
                    "(fine-tuning another lambda).")
flags.DEFINE_integer("seed", 0, "Seed of the initialization and patches.")
flags.DEFINE_integer("log_every", 100, "Steps between log lines.")
flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints.")
flags.DEFINE_integer("validate_every", 2000, "Steps between validations.")
flags.DEFINE_integer("num_validation", 6, "Training images held out.")
flags.DEFINE_integer("max_checkpoints", 3, "Checkpoints kept.")
flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF).")
flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF).")
flags.DEFINE_bool("finalize_only", False, "Freeze and save the latest "
                  "checkpoint, then exit.")
flags.mark_flags_as_required(["model_dir", "train_glob"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  from balle import training  # pylint: disable=g-import-not-at-top
  config = training.TrainConfig(
      model_dir=FLAGS.model_dir, final_dir=FLAGS.final_dir,
      train_glob=tuple(FLAGS.train_glob), lmbda=FLAGS.lmbda,
      num_filters=FLAGS.num_filters, gdn_form=FLAGS.gdn_form,
      patchsize=FLAGS.patchsize, batchsize=FLAGS.batchsize,
      max_steps=FLAGS.max_steps, max_time_s=FLAGS.max_time_s,
      learning_rate=FLAGS.learning_rate,
      lr_warmup_steps=FLAGS.lr_warmup_steps,
      lr_schedule=FLAGS.lr_schedule,
      lr_boundaries=tuple(float(b) for b in FLAGS.lr_boundaries),
      lr_values=tuple(float(v) for v in FLAGS.lr_values),
      plateau_window=FLAGS.plateau_window,
      plateau_patience=FLAGS.plateau_patience,
      plateau_min_improvement=FLAGS.plateau_min_improvement,
      plateau_min_lr=FLAGS.plateau_min_lr, clip_norm=FLAGS.clip_norm,
      divergence_factor=FLAGS.divergence_factor,
      max_rollbacks=FLAGS.max_rollbacks,
      precision=FLAGS.precision,
      init_from=FLAGS.init_from, seed=FLAGS.seed, log_every=FLAGS.log_every,
      checkpoint_every=FLAGS.checkpoint_every,
      validate_every=FLAGS.validate_every,
      num_validation=FLAGS.num_validation,
      max_checkpoints=FLAGS.max_checkpoints)
  os.makedirs(FLAGS.model_dir, exist_ok=True)
  if FLAGS.finalize_only:
    training.finalize_only(config)
  else:
    training.train(config)


if __name__ == "__main__":
  app.run(main)
