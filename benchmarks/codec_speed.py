"""Encode/decode time of one image: balle's models against each other and
against JPEG, in one run.

    python benchmarks/codec_speed.py [--models=A,B,...] [--image=PATH]

Every candidate (each model's `codec.compress_image` and `decompress_image`:
the whole file, analysis, range coding, header; Pillow's JPEG at quality 90,
4:2:0, optimized Huffman, on the same pixels) is warmed up once, then timed
--repeats times round-robin, so that background load hits them alike. Prints
the medians, each model's encode + decode time as a multiple of the first
model's (issue 18's speed target: the hyperprior at most 1.3x the factorized
model) and of JPEG's. With --float_indexes, each model with exact indexes
(balle.integer_network) is preceded by its float-index twin, the same model
coding as before its indexes were exact (issue 28's target: exact at most
1.1x float). Without --image it codes a generated 768x512
photo-like image (Kodak's size).
"""

import io
import statistics
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from balle import pretrained
from balle.coding import codec
from balle.io import image_io

_MODELS = flags.DEFINE_list(
    "models", ["bls2017-mse-0.0250", "bmshj2018-mse-0.0250"],
    "Model names or folders; the first is the reference of the ratios.")
_IMAGE = flags.DEFINE_string("image", None, "Image to code.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed runs per candidate.")
_FLOAT_INDEXES = flags.DEFINE_bool(
    "float_indexes", False, "Also time each exact model's float-index twin, "
    "listed before it.")


def median_times_s(candidates, repeats):
  """{name: median wall time} of the callables `candidates` {name: f}, each
  called once untimed (tracing, caches), then `repeats` times round-robin."""
  for function in candidates.values():
    function()
  times_s = {name: [] for name in candidates}
  for _ in range(repeats):
    for name, function in candidates.items():
      start = time.perf_counter()
      function()
      times_s[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times_s.items()}


def _generated_image(height=512, width=768):
  y, x = np.mgrid[0:height, 0:width]
  rng = np.random.default_rng(0)
  planes = [128 + 90 * np.sin(x / (17 + 5 * c)) * np.cos(y / 23)
            + rng.normal(0, 8, (height, width)) for c in range(3)]
  return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def _jpeg_bytes(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=90,
                              optimize=True)
  return buffer.getvalue()


def main(argv):
  del argv
  image = (image_io.read_image(_IMAGE.value) if _IMAGE.value
           else _generated_image())
  height, width, _ = image.shape
  candidates, sizes, names = {}, {}, []
  models = []
  for spec in _MODELS.value:
    model = pretrained.resolve(spec)
    if _FLOAT_INDEXES.value and model.float_index_model_id is not None:
      models.append((f"{model.config.name} float indexes",
                     model.float_index_twin()))
    models.append((model.config.name or spec, model))
  for name, model in models:
    data = codec.compress_image(model, image)
    sizes[name] = len(data)
    names.append(name)
    candidates[f"{name} encode"] = (
        lambda m=model: codec.compress_image(m, image))
    candidates[f"{name} decode"] = (
        lambda m=model, d=data: codec.decompress_image(d, m))
    print(f"{name}: {model.config.architecture}, "
          f"N={model.config.num_filters}, M={model.config.num_latent_channels}, "
          f"{len(data)} bytes, {8 * len(data) / (height * width):.3f} bpp")
  jpeg = _jpeg_bytes(image)
  sizes["JPEG"] = len(jpeg)
  candidates["JPEG encode"] = lambda: _jpeg_bytes(image)
  candidates["JPEG decode"] = lambda: np.asarray(
      Image.open(io.BytesIO(jpeg)).convert("RGB"))
  times_s = median_times_s(candidates, _REPEATS.value)

  def both(name):
    return times_s[f"{name} encode"] + times_s[f"{name} decode"]

  print(f"\nimage {width}x{height}; median of {_REPEATS.value} runs, "
        "round-robin\n")
  print("| | encode ms | decode ms | bytes | encode + decode vs "
        f"{names[0]} | vs JPEG q90 |")
  print("|---|---:|---:|---:|---:|---:|")
  for name in names + ["JPEG"]:
    print(f"| {name} | {1000 * times_s[f'{name} encode']:.1f} | "
          f"{1000 * times_s[f'{name} decode']:.1f} | {sizes[name]:,} | "
          f"x{both(name) / both(names[0]):.2f} | "
          f"x{both(name) / both('JPEG'):.1f} |")


if __name__ == "__main__":
  app.run(main)
