"""Trains one rate of a compression model, by default the factorized prior
(flags over balle/training/config.py and balle/training/loop.py).

  python -m experiments.train --lmbda=0.0130 --num_filters=128 \
      --train_glob=TRAIN_DIR --model_dir=runs/bls2017-0.0130 \
      --max_time_s=2600 --max_checkpoints=30

One flag per setting of `balle.training.config.TrainConfig` (the model's
settings included), with the name, default and help text declared there;
`--help` lists them. The defaults are the recipe that won the budget study in
benchmarks/README.md: N = 128, 8x128² patches, Adam 1e-3 with 200 warm-up
steps, 1e-4 for the last 20 % of the budget, transforms in mixed bfloat16
where the CPU supports it.

Rerunning the same command resumes from the latest checkpoint (weights, Adam
state, step, schedule, elapsed time). Once --max_steps or --max_time_s is
reached the frozen model goes to <model_dir>/final with recipe.json; rerunning
then only redoes that. --finalize_only freezes the latest checkpoint of an
unfinished run. Other rates: --init_from=<model_dir>/final --lmbda=... with a
new --model_dir (warm start of g_a, g_s and the prior).

Several devices (balle/training/distribute.py; the --batchsize patches of a step
are split over them, and the step is the one one device takes on them):

  python -m experiments.train --strategy=mirrored ...      # all local GPUs
  python -m experiments.train --strategy=mirrored --cpu_devices=2 ...

Several machines: start every worker with the same flags and its own
TF_CONFIG; the chief (worker 0) writes --model_dir, which every worker must
be able to read to resume:

  TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
              "task": {"type": "worker", "index": 0}}' \
      python -m experiments.train --strategy=multi_worker ...
"""

from absl import app
from absl import flags

from balle import training
from balle.training import config as train_config

# Settings every run must give: defined without a default, marked required.
REQUIRED = ("model_dir", "train_glob")


def define_setting_flags(flag_values=flags.FLAGS):
  """One absl flag per training setting (`train_config.setting_fields`)."""
  for name, default, metadata in train_config.setting_fields():
    default = None if name in REQUIRED else default
    help_text, choices = metadata["help"], metadata["choices"]
    kwargs = dict(name=name, help=help_text, flag_values=flag_values)
    if metadata["repeated"]:
      flags.DEFINE_multi_string(default=default, **kwargs)
    elif isinstance(default, tuple):  # numbers
      flags.DEFINE_list(default=[str(v) for v in default], **kwargs)
    elif isinstance(default, bool):
      flags.DEFINE_bool(default=default, **kwargs)
    elif choices and isinstance(choices[0], str):
      flags.DEFINE_enum(default=default, enum_values=list(choices), **kwargs)
    elif isinstance(default, int):
      flags.DEFINE_integer(default=default, **kwargs)
      if choices:
        flags.register_validator(
            name, lambda value, choices=choices: value in choices,
            f"--{name} must be one of {choices}", flag_values=flag_values)
    elif isinstance(default, float):
      flags.DEFINE_float(default=default, **kwargs)
    else:
      flags.DEFINE_string(default=default, **kwargs)
  flags.mark_flags_as_required(REQUIRED, flag_values=flag_values)


def config_from_flags(flag_values=flags.FLAGS):
  """The TrainConfig the setting flags describe: repeated flags become
  tuples of strings, comma-separated lists tuples of numbers."""
  settings = {}
  for name, default, metadata in train_config.setting_fields():
    value = flag_values[name].value
    if metadata["repeated"]:
      value = tuple(value)
    elif isinstance(default, tuple):
      value = tuple(float(v) for v in value)
    settings[name] = value
  return train_config.TrainConfig.create(**settings)


define_setting_flags()
flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF).")
flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF).")
flags.DEFINE_bool("finalize_only", False, "Freeze and save the latest "
                  "checkpoint, then exit.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  config = config_from_flags()
  if FLAGS.finalize_only:
    training.finalize_only(config)
  else:
    try:
      training.train(config)
    except training.WorkerLostError as error:
      raise SystemExit(f"train: {error}") from None


if __name__ == "__main__":
  app.run(main)
