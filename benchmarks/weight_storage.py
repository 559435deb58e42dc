"""What int8 convolution kernels cost: each model's `compact_copy` (kernels
int8 with a float16 scale per filter, balle.models.weight_storage) against its
`half_precision_copy` (float16, how models shipped until now), in one run.

    python benchmarks/weight_storage.py --images=campaign/yardstick.txt \
        [--models=bls2017-mse-0.0250,bmshj2018-mse-0.0250] [--per_layer]
        [--stride=4]

Both copies of a model code the same images into whole files
(balle.campaign.diagnosis.measure: bpp from the file size); prints each copy's
weights.npz bytes, bpp, PSNR and J = bpp + lambda MSE, the size ratio and
the change of J as dB at equal rate (balle.campaign.diagnosis.db_at_equal_rate).
With --per_layer, also a copy per convolution with only that layer's
kernels int8 (the layers touching the pixels included, which `compact_copy`
keeps float16). Use validation images (the campaign's yardstick), never
Kodak, to decide.
"""

import os
import tempfile

from absl import app
from absl import flags

from balle import data
from balle import pretrained
from balle.campaign import diagnosis
from balle.models import compression_model
from balle.models import weight_storage

_MODELS = flags.DEFINE_list(
    "models", ["bls2017-mse-0.0250", "bmshj2018-mse-0.0250"],
    "Model names or folders.")
_IMAGES = flags.DEFINE_string(
    "images", None, "Images: glob patterns (comma-separated), a folder, or "
    "a .txt file listing one path per line.", required=True)
_STRIDE = flags.DEFINE_integer(
    "stride", 1, "Use every stride-th of the images (1: all).")
_PER_LAYER = flags.DEFINE_bool(
    "per_layer", False, "Also measure each convolution alone in int8.")


def saved_bytes(model):
  """Size of the model's weights.npz as `save` writes it."""
  with tempfile.TemporaryDirectory() as directory:
    model.save(directory)
    return os.path.getsize(os.path.join(directory,
                                        compression_model.WEIGHTS_FILE))


def one_layer_int8_copy(model, layer):
  """The half-precision copy with only `layer`'s kernels rounded to int8."""
  return model.compact_copy(
      int8_kernel=lambda name, shape: name.startswith(layer + "/") and (
          name.endswith(weight_storage.KERNEL_SUFFIXES)))


def main(argv):
  del argv
  files = data.image_files(_IMAGES.value)[::_STRIDE.value]
  images, _ = data.load_images(files)
  print(f"{len(images)} images from {_IMAGES.value}")
  print("| model | copy | weights MB | bpp | PSNR dB | J | size ratio | "
        "dB at equal rate |")
  print("|---|---|---:|---:|---:|---:|---:|---:|")
  for name in _MODELS.value:
    model = pretrained.resolve(name)
    lmbda = model.config.lmbda
    crops = [data.crop_to_multiple(a, model.downsampling_factor)
             for a in images]
    copies = [("float16", model.half_precision_copy()),
              ("int8 kernels", model.compact_copy())]
    if _PER_LAYER.value:
      layers = sorted({name.split("/")[0] for name in model.named_weights()
                       if name.endswith(weight_storage.KERNEL_SUFFIXES)})
      copies += [(f"only {layer} int8", one_layer_int8_copy(model, layer))
                 for layer in layers]
    rows = {}
    for label, copy in copies:
      rows[label] = (saved_bytes(copy), diagnosis.measure(copy, crops, lmbda))
    base_bytes, base = rows["float16"]
    for label, (size, figures) in rows.items():
      db = diagnosis.db_at_equal_rate(figures["loss"], base["loss"], lmbda,
                                      base["mse_255"])
      print(f"| {name} | {label} | {size / 1e6:.2f} | {figures['bpp']:.4f} "
            f"| {figures['psnr_db']:.3f} | {figures['loss']:.4f} | "
            f"{size / base_bytes:.3f} | {db:+.4f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
