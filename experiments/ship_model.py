"""Adds a trained model to the shipped models in the source tree.

    python -m experiments.ship_model --model_dir=runs/bls2017-0.0130/final \
        [--destination=balle/pretrained] [--overwrite]

Writes DESTINATION/<model name>/ (config.json, weights.npz and the training
run's recipe.json), each file atomically. The default destination is this
checkout's balle/pretrained, never the installed package. The weights are
stored compactly (float16, the inner convolution kernels int8: ~0.3x the
float32 bytes; `benchmarks/weight_storage.py` measures what that costs on
validation images); evaluate the shipped model afterwards
(experiments.evaluate).
"""

import os

from absl import app
from absl import flags

from balle.io import safe_write
from balle.models import compression_model
from balle.training import config as train_config
from experiments import SOURCE_PRETRAINED

flags.DEFINE_string("model_dir", None, "Folder of a trained model (final/).")
flags.DEFINE_string("destination", SOURCE_PRETRAINED,
                    "Folder of shipped models to add it to.")
flags.DEFINE_bool("overwrite", False, "Replace a shipped model of that name.")
FLAGS = flags.FLAGS  # --model_dir is checked in main, not marked required:
# experiments.campaign imports `ship`, and a required flag would bind it too.


def ship(trained_directory, destination, overwrite=False):
  """Saves a compact copy of the model in `trained_directory` (weights
  float16, inner kernels int8: `compact_copy`, ~0.3x the bytes) as
  destination/<its config name>, with the run's recipe.json beside it if
  there is one. Returns that folder."""
  model = compression_model.load_model(trained_directory).compact_copy()
  target = os.path.join(destination, model.config.name)
  model.save(target, overwrite=overwrite)
  recipe = os.path.join(trained_directory, train_config.RECIPE_FILE)
  if os.path.exists(recipe):
    with open(recipe, "rb") as f:
      recipe_bytes = f.read()
    safe_write.write_file_atomic(os.path.join(target, train_config.RECIPE_FILE),
                                 lambda f: f.write(recipe_bytes),
                                 overwrite=overwrite)
  return target


def main(argv):
  del argv
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  print(ship(FLAGS.model_dir, FLAGS.destination, FLAGS.overwrite))


if __name__ == "__main__":
  app.run(main)
