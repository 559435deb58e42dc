"""Tiled coding: peak memory and time per pixel through the CLI, and the cost
of tiles on Kodak-size images.

    python benchmarks/tiled_coding.py [--images=DIR] [--model=NAME_OR_DIR]
        [--sizes=8192x6144,4096x3072] [--tile_sizes=256,512]

Part 1 writes a synthetic smooth photo-like PNG of each --sizes (width x
height), runs `python -m balle.cli compress` and `decompress` on it in a
child process, and prints each child's wall time, time per pixel and peak
resident memory (getrusage of that child), median of --repeats rounds run
interleaved. A 16x16 image measures the start-up (imports, model loading)
that every run pays once. Then the same images through the library with the
model loaded (no start-up, no PNG), the steadier time-per-pixel figure.

Part 2 (with --images) codes each image whole (one tile: what the library
does up to 1024 pixels a side) and in tiles of each --tile_sizes, and prints
mean RGB PSNR and whole-file bpp of each, with the differences to whole.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_smooth_png(path, width, height, rows_per_block=512):
  """A photo-like image (smooth waves, mild noise), built in row blocks so
  that this process stays small."""
  rng = np.random.default_rng(0)
  phases = rng.uniform(0, 2 * np.pi, 3)
  image = Image.new("RGB", (width, height))
  x = np.arange(width, dtype=np.float32)[None, :]
  for top in range(0, height, rows_per_block):
    y = np.arange(top, min(top + rows_per_block, height),
                  dtype=np.float32)[:, None]
    planes = [128 + 70 * np.sin(x / 57.0 + phases[c]) * np.cos(y / 83.0 + c)
              + 30 * np.sin((x + 2 * y) / 331.0)
              + rng.normal(0, 3, (len(y), width)).astype(np.float32)
              for c in range(3)]
    block = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    image.paste(Image.fromarray(block), (0, top))
  image.save(path, compress_level=1)


def run_cli(*argv):
  """(wall time in s, peak RSS in bytes) of `balle ARGV` in a child."""
  start = time.perf_counter()
  process = subprocess.Popen(
      [sys.executable, "-m", "balle.cli", *map(str, argv)], cwd=_ROOT,
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _, status, usage = os.wait4(process.pid, 0)
  wall_s = time.perf_counter() - start
  process.returncode = os.waitstatus_to_exitcode(status)
  if process.returncode:
    raise RuntimeError(f"balle {' '.join(map(str, argv))} failed: "
                       f"{process.stderr.read().decode()[-500:]}")
  return wall_s, usage.ru_maxrss * 1024


def cli_benchmark(sizes, model, repeats):
  """Median over `repeats` interleaved rounds (the machine is shared)."""
  model_flag = [f"--model={model}"] if model else []
  sizes = [(16, 16)] + sizes
  with tempfile.TemporaryDirectory() as folder:
    runs = {size: ([], []) for size in sizes}
    for width, height in sizes:
      write_smooth_png(os.path.join(folder, f"{width}x{height}.png"), width,
                       height)
    for _ in range(repeats):
      for width, height in sizes:
        png = os.path.join(folder, f"{width}x{height}.png")
        coded = png[:-4] + ".balle"
        runs[(width, height)][0].append(
            run_cli("compress", png, coded, "--overwrite", *model_flag))
        runs[(width, height)][1].append(
            run_cli("decompress", coded, png[:-4] + ".out.png", "--overwrite",
                    *model_flag))
    bpp = {(w, h): 8 * os.path.getsize(
        os.path.join(folder, f"{w}x{h}.balle")) / (w * h) for w, h in sizes}
  median = {size: [(float(np.median([r[0] for r in rs])),
                    max(r[1] for r in rs)) for rs in runs[size]]
            for size in sizes}
  startup_s = median[(16, 16)]
  print(f"CLI, median of {repeats} interleaved runs; peak RSS: the largest "
        "of them")
  print("| image | bpp | encode s | encode ns/px (net) | encode peak RSS "
        "GiB | decode s | decode ns/px (net) | decode peak RSS GiB |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for (width, height) in sizes:
    pixels = width * height
    cells = []
    for step, (wall_s, rss) in enumerate(median[(width, height)]):
      net_s = wall_s - startup_s[step][0]
      cells.append(f"{wall_s:.1f} | {1e9 * wall_s / pixels:.0f} "
                   f"({1e9 * net_s / pixels:.0f}) | {rss / 2**30:.2f}")
    print(f"| {width}x{height} | {bpp[(width, height)]:.4f} | "
          + " | ".join(cells) + " |")
  print("(net: minus the 16x16 run's time, i.e. without start-up)")


def library_benchmark(sizes, model_name, repeats):
  """Time per pixel of codec.compress_image / decompress_image, model
  loaded, median of `repeats` interleaved rounds after a warm-up."""
  from balle import pretrained  # pylint: disable=import-outside-toplevel
  from balle.coding import codec  # pylint: disable=import-outside-toplevel
  model = pretrained.resolve(model_name)
  images, times = {}, {size: ([], []) for size in sizes}
  with tempfile.TemporaryDirectory() as folder:
    for width, height in sizes:
      png = os.path.join(folder, "image.png")
      write_smooth_png(png, width, height)
      with Image.open(png) as image:
        images[(width, height)] = np.asarray(image)
  data = {size: codec.compress_image(model, image)
          for size, image in images.items()}  # warm-up: traces every tile
  for size in sizes:
    codec.decompress_image(data[size], model)
  for _ in range(repeats):
    for size in sizes:
      start = time.perf_counter()
      codec.compress_image(model, images[size])
      times[size][0].append(time.perf_counter() - start)
      start = time.perf_counter()
      codec.decompress_image(data[size], model)
      times[size][1].append(time.perf_counter() - start)
  print(f"Library, model loaded, median of {repeats} interleaved runs")
  print("| image | encode s | encode ns/px | decode s | decode ns/px |")
  print("|---|---:|---:|---:|---:|")
  for (width, height), (encode, decode) in times.items():
    pixels = width * height
    print(f"| {width}x{height} | {np.median(encode):.2f} | "
          f"{1e9 * np.median(encode) / pixels:.0f} | {np.median(decode):.2f} "
          f"| {1e9 * np.median(decode) / pixels:.0f} |")


def kodak_benchmark(folder, tile_sizes, model_name):
  from balle import pretrained  # pylint: disable=import-outside-toplevel
  from balle.coding import codec  # pylint: disable=import-outside-toplevel
  from balle.evaluation import metrics  # pylint: disable=import-outside-toplevel
  from balle.io import image_io  # pylint: disable=import-outside-toplevel
  model = pretrained.resolve(model_name)
  paths = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                 if name.lower().endswith(image_io.IMAGE_SUFFIXES))
  results = {}
  for path in paths:
    image = image_io.read_image(path)
    height, width, _ = image.shape
    for tile_size in [0] + tile_sizes:
      data = codec.compress_image(model, image,
                                  tile_size=tile_size or codec.TILE_SIZE)
      decoded = codec.decompress_image(data, model)
      results.setdefault(tile_size, []).append(
          (metrics.bits_per_pixel(len(data), height, width),
           metrics.psnr_rgb(image, decoded)))
  whole_bpp, whole_psnr = np.mean(results[0], axis=0)
  print(f"{len(paths)} images from {folder}, model {model.config.name}")
  print("| coding | bpp | PSNR dB | bpp vs whole | PSNR vs whole dB |")
  print("|---|---:|---:|---:|---:|")
  for tile_size, values in results.items():
    bpp, psnr = np.mean(values, axis=0)
    name = f"tiles of {tile_size}" if tile_size else "whole (one tile)"
    print(f"| {name} | {bpp:.4f} | {psnr:.3f} | "
          f"{100 * (bpp / whole_bpp - 1):+.2f} % | {psnr - whole_psnr:+.3f} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", help="folder of Kodak-size images")
  parser.add_argument("--model", default=None)
  parser.add_argument("--sizes", default="8192x6144,4096x3072")
  parser.add_argument("--tile_sizes", default="256,512")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  sys.path.insert(0, _ROOT)
  sizes = [tuple(int(v) for v in size.split("x"))
           for size in args.sizes.split(",") if size]
  if sizes:
    cli_benchmark(sizes, args.model, args.repeats)
    library_benchmark(sizes, args.model, args.repeats)
  if args.images:
    kodak_benchmark(args.images, [int(v) for v in args.tile_sizes.split(",")],
                    args.model)


if __name__ == "__main__":
  main()
