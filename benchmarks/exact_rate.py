"""What exact decoding choices cost in rate: each image coded by the exact
models and by their float-index twins (the same models as before their
indexes were exact), in one run.

    python benchmarks/exact_rate.py --images=campaign/yardstick.txt [--models=A,B]

Both code the same rounded latents, so PSNR is identical and only the
CDFs (table indexes) differ: prints each model's bytes both ways, the
share of images whose pixels are identical, and the BD-rate of the exact
family curve against the float one (PSNR RGB; issue 28's target: <= 1 %).
"""

import os

import numpy as np
from absl import app
from absl import flags

from balle import pretrained
from balle.coding import codec
from balle.data import files
from balle.evaluation import bd_rate, metrics
from balle.io import image_io
from balle.models import EXACT_FILE

_IMAGES = flags.DEFINE_string(
    "images", None, "Images: a folder, glob or .txt list (balle.data.files).",
    required=True)
_MODELS = flags.DEFINE_list(
    "models", None, "Exact models; default: every shipped model with exact "
    "indexes.")


def _exact_models():
  """The shipped models with exact tables (an exact.npz beside weights)."""
  return [name for name in pretrained.list_models()
          if os.path.exists(os.path.join(pretrained.model_directory(name),
                                         EXACT_FILE))]


def main(argv):
  del argv
  paths = files.image_files(_IMAGES.value)
  images = [image_io.read_image(path) for path in paths]
  pixels = sum(image.shape[0] * image.shape[1] for image in images)
  curves = {"exact": [], "float": []}
  print(f"{len(images)} images, {pixels / 1e6:.2f} Mpix\n")
  print("| model | float-index bytes | exact bytes | exact / float | "
        "identical pixels | PSNR (dB) |")
  print("|---|---:|---:|---:|---:|---:|")
  for name in _MODELS.value or _exact_models():
    exact = pretrained.resolve(name)
    twin = exact.float_index_twin()
    sizes = {"exact": 0, "float": 0}
    same, psnr = 0, []
    for image in images:
      decoded = {}
      for kind, model in (("exact", exact), ("float", twin)):
        file_bytes = codec.compress_image(model, image)
        sizes[kind] += len(file_bytes)
        decoded[kind] = codec.decompress_image(file_bytes, exact)
      same += np.array_equal(decoded["exact"], decoded["float"])
      psnr.append(metrics.psnr_rgb(image, decoded["exact"]))
    for kind in curves:
      curves[kind].append((8 * sizes[kind] / pixels, float(np.mean(psnr))))
    print(f"| {name} | {sizes['float']:,} | {sizes['exact']:,} | "
          f"{sizes['exact'] / sizes['float']:.5f} | {same}/{len(images)} | "
          f"{np.mean(psnr):.2f} |")
  if len(curves["exact"]) >= 2:
    rate, _ = bd_rate.bd_rate(curves["float"], curves["exact"])
    print(f"\nBD-rate of the exact models against the float-index ones "
          f"(PSNR RGB): {rate:+.3f} %")


if __name__ == "__main__":
  app.run(main)
