"""Reproduces the Kodak rate-distortion comparison end to end.

    python -m experiments.reproduce_kodak [--images=data/kodak] [--quick]

1. finds the 24 Kodak images in --images (downloads them there when the
   folder is missing or empty and the network allows);
2. evaluates the shipped pretrained models (or --models) with real
   compress/decompress (balle.evaluation);
3. measures the classic codecs through Pillow (balle.evaluation.baselines,
   cached);
4. plots PSNR and MS-SSIM against bpp beside published curves and writes the
   table (balle.evaluation.rd_curves), with the choices of experiments/kodak.py.

Everything goes to --output_dir (results/kodak; results/kodak_quick with
--quick, which uses the first 3 images, 3 settings per codec and 3 models
per family).
"""

import os
import sys

from absl import app, flags, logging

from balle import evaluation
from balle.evaluation import baselines
from balle.evaluation import rd_curves
from experiments import kodak

flags.DEFINE_string("images", "data/kodak",
                    "Folder of the Kodak PNGs (downloaded there if missing).")
flags.DEFINE_string("output_dir", "",
                    "Where to write (default results/kodak, or "
                    "results/kodak_quick with --quick).")
flags.DEFINE_list("models", None,
                  "Model folders or shipped names (default: all shipped).")
flags.DEFINE_list("codecs", list(baselines.DEFAULT_CODECS),
                  f"Classic codecs, from {sorted(baselines.CODECS_BY_NAME)}.")
flags.DEFINE_bool("quick", False,
                  "First --quick_images images, 3 settings per codec, 3 "
                  "models per family (CI).")
flags.DEFINE_integer("quick_images", 3, "Images used with --quick.")
flags.DEFINE_bool("download", True,
                  "Download Kodak into --images when it has no images.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  output_dir = FLAGS.output_dir or (
      "results/kodak_quick" if FLAGS.quick else "results/kodak")
  try:
    kodak.ensure_kodak(FLAGS.images, FLAGS.download)
  except FileNotFoundError as error:
    sys.exit(f"error: {error}")
  paths = evaluation.list_image_files(
      FLAGS.images, FLAGS.quick_images if FLAGS.quick else 0)
  images = evaluation.named_images(paths)
  image_set = evaluation.image_set_hash(paths)
  logging.info("%d images from %s (image set %s)", len(images), FLAGS.images,
               image_set[:12])

  result_paths = []
  model_names = FLAGS.models
  if model_names is None:
    from balle import pretrained  # pylint: disable=import-outside-toplevel
    model_names = pretrained.list_models()
  if model_names:
    if FLAGS.quick:
      model_names = evaluation.spread_per_family(model_names, 3)
    written = evaluation.evaluate_families(
        model_names, images, os.path.join(output_dir, "models"),
        kodak.MODEL_LABELS, image_set)
    result_paths += [p for p in written if p.endswith(".json")]
  else:
    logging.warning("no shipped pretrained models and no --models: only the "
                    "classic codecs are measured")

  written = baselines.run(
      baselines.get_codecs(FLAGS.codecs), images, image_set,
      os.path.join(output_dir, "baselines"),
      cache_dir=os.path.join(output_dir, "cache"), quick=FLAGS.quick)
  result_paths += [p for p in written if p.endswith(".json")]

  curves = rd_curves.load_curves(result_paths)
  curves += rd_curves.published_curves(kodak.PUBLISHED_CURVES)
  title = f"Kodak ({len(images)} image{'s' * (len(images) != 1)})"
  written = rd_curves.write_report(curves, output_dir, title, kodak.ANCHORS)
  logging.info("wrote %s", ", ".join(written))
  with open(os.path.join(output_dir, "rd_table.md")) as f:
    print(f.read())


if __name__ == "__main__":
  app.run(main)
