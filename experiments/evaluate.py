"""Rate-distortion evaluation of trained models on an image set.

    python -m experiments.evaluate --models=DIR_OR_NAME,... --images=DIR \
        --output_dir=results/models

Every image is compressed to a complete .balle file and decompressed
(balle.coding.codec). Writes OUTPUT_DIR/results.json (CompressAI layout, one
entry per model, sorted by bpp) and OUTPUT_DIR/per_image.csv; for models of
several families (bls2017, bmshj2018) one such pair per family in
OUTPUT_DIR/<family>/, each its own curve.
"""

import sys

from absl import app, flags, logging

from balle import evaluation
from experiments import kodak

flags.DEFINE_list("models", None, "Model folders or shipped model names.")
flags.DEFINE_string("images", None, "Folder of test images.")
flags.DEFINE_string("output_dir", "results/models", "Where to write.")
flags.DEFINE_integer("max_images", 0, "Use the first N images (0: all).")
flags.DEFINE_string("label", "", "Curve name in results.json and plots "
                    "(models of one family only; default: the family's "
                    "label in experiments/kodak.py).")
flags.mark_flags_as_required(["models", "images"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  paths = evaluation.list_image_files(FLAGS.images, FLAGS.max_images)
  images = evaluation.named_images(paths)
  labels = kodak.MODEL_LABELS
  if FLAGS.label:
    labels = {family: FLAGS.label for family in labels}
  try:
    written = evaluation.evaluate_families(
        FLAGS.models, images, FLAGS.output_dir, labels,
        evaluation.image_set_hash(paths), one_label=bool(FLAGS.label))
  except ValueError as error:
    sys.exit(f"error: {error}")
  logging.info("wrote %s", ", ".join(written))


if __name__ == "__main__":
  app.run(main)
