"""Adds a trained model to the package's shipped models (balle/pretrained).

    python -m experiments.ship_model --model_dir=runs/bls2017-0.0130/final [--overwrite]

The weights are rounded to float16 to halve the repository size; evaluate
the shipped model afterwards (experiments.evaluate) to see what that cost.
"""

from absl import app
from absl import flags

from balle import pretrained

flags.DEFINE_string("model_dir", None, "Folder of a trained model (final/).")
flags.DEFINE_bool("overwrite", False, "Replace a shipped model of that name.")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  print(pretrained.ship(FLAGS.model_dir, overwrite=FLAGS.overwrite))


if __name__ == "__main__":
  app.run(main)
