"""Encode/decode time of a 768x512 image: balle vs JPEG, in one run.

    python benchmarks/codec_speed.py [--model=NAME_OR_DIR] [--image=PATH]

Prints the median wall time of `codec.compress_image` / `decompress_image`
(whole file: analysis, range coding, header) over --repeats runs after a
warm-up, the same for Pillow's JPEG (quality 90, 4:2:0, optimized Huffman) on
the same pixels, and balle's time as a multiple of JPEG's. Without --image it
codes a generated 768x512 photo-like image.
"""

import io
import statistics
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from balle import codec, image_io, pretrained

_MODEL = flags.DEFINE_string("model", None, "Model name or folder.")
_IMAGE = flags.DEFINE_string("image", None, "Image to code.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed runs per measurement.")


def _median_time_s(function):
  function()  # warm-up: traces tf.functions, fills caches
  times_s = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    function()
    times_s.append(time.perf_counter() - start)
  return statistics.median(times_s)


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
  model = pretrained.resolve(_MODEL.value)
  image = (image_io.read_image(_IMAGE.value) if _IMAGE.value
           else _generated_image())
  data = codec.compress_image(model, image)
  jpeg = _jpeg_bytes(image)
  rows = [
      ("balle encode", _median_time_s(lambda: codec.compress_image(model,
                                                                   image))),
      ("balle decode", _median_time_s(lambda: codec.decompress_image(data,
                                                                     model))),
      ("JPEG encode", _median_time_s(lambda: _jpeg_bytes(image))),
      ("JPEG decode", _median_time_s(
          lambda: np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))),
  ]
  height, width, _ = image.shape
  print(f"image {width}x{height}, model {model.config.name} "
        f"(N={model.config.num_filters}), {len(data)} bytes balle, "
        f"{len(jpeg)} bytes JPEG q90; median of {_REPEATS.value} runs")
  for name, time_s in rows:
    print(f"{name:13s} {1000 * time_s:8.1f} ms")
  print(f"balle/JPEG time ratio: encode {rows[0][1] / rows[2][1]:.1f}x, "
        f"decode {rows[1][1] / rows[3][1]:.1f}x")


if __name__ == "__main__":
  app.run(main)
