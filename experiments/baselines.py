"""Measures classic codecs (JPEG, JPEG 2000, WebP, AVIF, HEIC) on an image set.

    python -m experiments.baselines --images=DIR --output_dir=results/baselines

Writes OUTPUT_DIR/<codec>.json (CompressAI layout) and <codec>_per_image.csv;
results are cached in OUTPUT_DIR/cache (see balle.evaluation.baselines).
"""

from absl import app, flags, logging

from balle import evaluation
from balle.evaluation import baselines

flags.DEFINE_string("images", None, "Folder of test images.")
flags.DEFINE_string("output_dir", "results/baselines", "Where to write.")
flags.DEFINE_list("codecs", list(baselines.DEFAULT_CODECS),
                  f"Codecs, from {sorted(baselines.CODECS_BY_NAME)}.")
flags.DEFINE_integer("max_images", 0, "Use the first N images (0: all).")
flags.DEFINE_bool("quick", False, "Three quality settings per codec.")
flags.DEFINE_string("cache_dir", None, "Cache folder (default OUTPUT_DIR/cache).")
flags.mark_flag_as_required("images")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  paths = evaluation.list_image_files(FLAGS.images, FLAGS.max_images)
  images = evaluation.named_images(paths)
  written = baselines.run(
      baselines.get_codecs(FLAGS.codecs), images,
      evaluation.image_set_hash(paths), FLAGS.output_dir,
      cache_dir=FLAGS.cache_dir, quick=FLAGS.quick)
  logging.info("wrote %s", ", ".join(written))


if __name__ == "__main__":
  app.run(main)
