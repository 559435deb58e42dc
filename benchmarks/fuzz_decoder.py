"""Fuzzes the .balle decoder with mutated files and the encoder with hostile
images, each case under a time and memory limit.

    python benchmarks/fuzz_decoder.py --cases=500 [--seed=0] [--images=DIR]
        [--time_limit_s=20] [--memory_limit_gib=4] [--failures_dir=DIR]
        [--model=NAME_OR_DIR | --architecture=bmshj2018]

Seed files are coded by the model (default: the shipped default model;
--architecture=bmshj2018: a small untrained scale-hyperprior model made for the
run, whose files have two sections per tile) from generated images (one
Kodak-size 768x512, one coded in 20 tiles, one gray) and the version-1 test
fixture; --images adds files coded from real photos. Each case is one mutation
of a seed: bit flips, truncation, a splice of two files, a header or
section-table field rewritten, the section table reordered (sections swapped,
dropped, duplicated or given another's shape), a huge but self-consistent size
claim, a section replaced by random bytes of any length, bytes inserted or
deleted, or random bytes; most get their checksum recomputed, as a forger would.
Hostile images (decompression-bomb headers, empty and non-image files, 16-bit,
CMYK, palette, animated and multi-page files) go to the encoder. Every case must
end in an image or a FormatError/ValueError, within --time_limit_s, with the
worker process below --memory_limit_gib.

The cases run one after another in one worker process (a child, restarted
after a crash, a timeout or a memory overrun); this process watches its time
and resident memory. Prints counts per mutation and outcome, failures with
their reason, and the slowest case and the peak memory; exits 1 on a failure.
`tests/coding/test_fuzz.py` runs a short bounded version.
"""

import argparse
import io
import json
import os
import pathlib
import select
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

_FIXTURE = (pathlib.Path(__file__).resolve().parent.parent / "tests" /
            "fixtures" / "v1_smooth_40x56.balle")
_GIB = 1 << 30


# -- seeds and mutations ---------------------------------------------------------

def smooth_image(height, width, channels=3, seed=0):
  """A photo-like uint8 image: smooth gradients plus mild noise."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  planes = [128 + 80 * np.sin(x / 9.0 + rng.uniform(0, 6.3)) *
            np.cos(y / 13.0 + c) + rng.normal(0, 6, (height, width))
            for c in range(channels)]
  return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def seed_files(model, images=()):
  """Valid .balle files to mutate."""
  from balle.coding import codec  # pylint: disable=import-outside-toplevel
  from balle.io import image_io  # pylint: disable=import-outside-toplevel
  seeds = [codec.compress_image(model, smooth_image(512, 768)),
           codec.compress_image(model, smooth_image(200, 300, seed=1),
                                tile_size=64),
           codec.compress_image(model, smooth_image(64, 48, 1, seed=2))]
  if _FIXTURE.exists():
    seeds.append(_FIXTURE.read_bytes())
  for path in images:
    seeds.append(codec.compress_image(model, image_io.read_image(path)))
  return seeds


def _recheck(data):
  """`data` with its last 4 bytes replaced by the Adler-32 of the rest."""
  from balle.coding import file_format  # pylint: disable=import-outside-toplevel
  return file_format.with_checksum(data[:-4])


def _interesting(rng, size):
  maximum = (1 << (8 * size)) - 1
  return int(rng.choice([0, 1, 2, maximum, maximum // 2 + 1,
                         int(rng.integers(0, maximum + 1))]))


def _field_offsets(data):
  """(offset, size) of every header and section-table field of a file."""
  if data[4] == 1:
    return [(5, 1), (6, 8)] + [(o, 2) for o in range(14, 24, 2)] + [(24, 4)]
  fields = [(5, 1), (6, 8), (14, 16), (30, 2), (32, 2), (34, 2), (36, 4)]
  count = min(struct.unpack_from(">I", data, 36)[0], (len(data) - 44) // 13)
  for index in range(count):
    entry = 40 + 13 * index
    fields += [(entry, 1)] + [(entry + 1 + 2 * d, 2) for d in range(4)] + [
        (entry + 9, 4)]
  return fields


def mutate_bit_flips(rng, data, _):
  data = bytearray(data)
  for _ in range(int(rng.integers(1, 9))):
    position = int(rng.integers(0, len(data) * 8))
    data[position // 8] ^= 1 << (position % 8)
  return _recheck(bytes(data)) if rng.random() < 0.7 else bytes(data)


def mutate_truncate(rng, data, _):
  cut = data[:int(rng.integers(0, len(data)))]
  return _recheck(cut) if len(cut) > 8 and rng.random() < 0.5 else cut


def mutate_splice(rng, data, seeds):
  other = seeds[int(rng.integers(0, len(seeds)))]
  spliced = (data[:int(rng.integers(0, len(data)))] +
             other[int(rng.integers(0, len(other))):])
  return _recheck(spliced) if len(spliced) > 8 else spliced


def mutate_field(rng, data, _):
  data = bytearray(data)
  fields = _field_offsets(bytes(data))
  for _ in range(int(rng.integers(1, 3))):
    offset, size = fields[int(rng.integers(0, len(fields)))]
    if size > 4:
      data[offset:offset + size] = rng.bytes(size)
    else:
      data[offset:offset + size] = _interesting(rng, size).to_bytes(size,
                                                                     "big")
  return _recheck(bytes(data))


# Pixels per element of each section of a tile, by architecture.
_SECTION_STRIDES = {"bls2017": (16,), "bmshj2018": (64, 16)}


def mutate_huge_claim(rng, data, _):
  """A self-consistent file claiming a big image: the right number of
  sections with the right shapes, each holding a few random bytes."""
  from balle.coding import file_format  # pylint: disable=import-outside-toplevel
  header, sections = file_format.unpack(data)
  height, width = (int(v) for v in rng.choice(
      [1024, 4096, 8192, 11585, 16384, 65535], size=2))
  tile_size = int(rng.choice([1024, 4096, 65535 // 64 * 64]))
  strides = _SECTION_STRIDES[header.architecture]
  channels = [section.shape[-1] for section in sections[:len(strides)]]
  rects = file_format.tiles(height, width, tile_size)[:20000]
  new = [file_format.Section((-(-(r[2] - r[0]) // stride),
                              -(-(r[3] - r[1]) // stride), depth),
                             rng.bytes(int(rng.integers(0, 64))))
         for r in rects for stride, depth in zip(strides, channels)]
  header = file_format.Header(header.channels, header.model_id, height, width,
                              tile_size, header.architecture)
  return file_format.pack(header, new)


def mutate_random_section(rng, data, _):
  from balle.coding import file_format  # pylint: disable=import-outside-toplevel
  header, sections = file_format.unpack(data)
  index = int(rng.integers(0, len(sections)))
  length = int(rng.integers(0, 2 * len(sections[index].data) + 2))
  sections[index] = file_format.Section(sections[index].shape,
                                        rng.bytes(length))
  return file_format.pack(header, sections)


def mutate_section_table(rng, data, _):
  """The same sections in another table: two swapped, one dropped or
  duplicated, or one given another's shape."""
  from balle.coding import file_format  # pylint: disable=import-outside-toplevel
  header, sections = file_format.unpack(data)
  i, j = (int(v) for v in rng.integers(0, len(sections), size=2))
  action = rng.choice(["swap", "drop", "duplicate", "reshape"])
  if action == "swap":
    sections[i], sections[j] = sections[j], sections[i]
  elif action == "drop":
    del sections[i]
  elif action == "duplicate":
    sections.insert(i, sections[j])
  else:
    sections[i] = file_format.Section(sections[j].shape, sections[i].data)
  if not sections:
    return data
  return file_format.pack(header, sections)


def mutate_insert_delete(rng, data, _):
  position = int(rng.integers(0, len(data)))
  if rng.random() < 0.5:
    data = data[:position] + rng.bytes(int(rng.integers(1, 17))) + \
        data[position:]
  else:
    data = data[:position] + data[position + int(rng.integers(1, 17)):]
  return _recheck(data) if len(data) > 8 else data


def mutate_random_bytes(rng, data, _):
  length = int(rng.integers(0, 2 * len(data)))
  if rng.random() < 0.5:
    return rng.bytes(length)
  return _recheck(data[:5] + rng.bytes(length + 4))


MUTATIONS = {
    "bit_flips": mutate_bit_flips,
    "truncate": mutate_truncate,
    "splice": mutate_splice,
    "field_rewrite": mutate_field,
    "huge_claim": mutate_huge_claim,
    "random_section": mutate_random_section,
    "section_table": mutate_section_table,
    "insert_delete": mutate_insert_delete,
    "random_bytes": mutate_random_bytes,
}


def hostile_images(folder):
  """Hostile or awkward inputs for the encoder: {name: path}."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  folder = pathlib.Path(folder)

  def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body +
            struct.pack(">I", zlib.crc32(kind + body)))

  def png_bomb(width, height):
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0,
                                       0)) +
            chunk(b"IDAT", zlib.compress(bytes(4096))) + chunk(b"IEND", b""))

  pixels = smooth_image(40, 56)
  files = {
      "bomb_60000x60000.png": png_bomb(60000, 60000),
      "bomb_12000x12000.png": png_bomb(12000, 12000),
      "bomb_65535x1.png": png_bomb(65535, 1),
      "empty.png": b"",
      "text.png": b"this is not an image\n" * 10,
      "balle_named.png": _FIXTURE.read_bytes() if _FIXTURE.exists() else b"B",
  }
  images = {
      "16bit.png": Image.fromarray((pixels[..., 0].astype(np.uint16) * 257)),
      "cmyk.jpg": Image.fromarray(pixels).convert("CMYK"),
      "cmyk.tif": Image.fromarray(pixels).convert("CMYK"),
      "palette.png": Image.fromarray(pixels).convert("P"),
      "bilevel.png": Image.fromarray(pixels).convert("1"),
      "rgba.png": Image.fromarray(pixels).convert("RGBA"),
      "float.tif": Image.fromarray(pixels[..., 0].astype(np.float32)),
      "one_pixel.png": Image.fromarray(pixels[:1, :1]),
  }
  for name, image in images.items():
    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions()[
        os.path.splitext(name)[1]])
    files[name] = buffer.getvalue()
  frames = [Image.fromarray(smooth_image(16, 16, seed=s)) for s in range(3)]
  for name in ("animated.gif", "multipage.tif"):
    buffer = io.BytesIO()
    frames[0].save(buffer, format=Image.registered_extensions()[
        os.path.splitext(name)[1]], save_all=True, append_images=frames[1:])
    files[name] = buffer.getvalue()
  good = files["palette.png"]
  files["truncated.png"] = good[:len(good) // 2]
  paths = {}
  for name, content in files.items():
    paths[name] = folder / name
    paths[name].write_bytes(content)
  return paths


# -- worker: decodes or encodes one case per line of stdin -----------------------

def _worker(model_name):
  """Reads JSON cases from stdin, answers one JSON line per case."""
  import warnings  # pylint: disable=import-outside-toplevel
  from balle import pretrained  # pylint: disable=import-outside-toplevel
  from balle.coding import codec  # pylint: disable=import-outside-toplevel
  from balle.io import image_io  # pylint: disable=import-outside-toplevel
  warnings.simplefilter("ignore")
  model = pretrained.resolve(model_name)
  print(json.dumps({"ready": True}), flush=True)
  for line in sys.stdin:
    case = json.loads(line)
    start = time.perf_counter()
    try:
      if case["kind"] == "decode":
        with open(case["path"], "rb") as f:
          shape = codec.decompress_image(f.read(), model).shape
      else:
        shape = codec.compress_image(
            model, image_io.read_image(case["path"])).__len__()
      outcome, detail = "ok", str(shape)
    except ValueError as error:  # FormatError is a ValueError
      outcome, detail = "rejected", f"{type(error).__name__}: {error}"
    except Exception as error:  # pylint: disable=broad-except
      outcome, detail = "crash", f"{type(error).__name__}: {error}"
    print(json.dumps({"outcome": outcome, "detail": detail[:300],
                      "time_s": time.perf_counter() - start}), flush=True)


class _Worker:
  """A worker child process, watched for time and resident memory."""

  def __init__(self, model_name):
    self.model_name = model_name
    self.process = None
    self.peak_rss_bytes = 0

  def _start(self):
    self.process = subprocess.Popen(
        [sys.executable, __file__, "--worker", f"--model={self.model_name}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    reply = self._read(timeout_s=300, memory_limit_bytes=None)
    if not reply or not reply.get("ready"):
      raise RuntimeError(f"fuzz worker did not start: {reply}")

  def stop(self):
    if self.process is not None:
      self.process.kill()
      self.process.wait()
      self.process = None

  def _rss_bytes(self):
    try:
      with open(f"/proc/{self.process.pid}/status") as f:
        for line in f:
          if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    except OSError:
      pass
    return 0

  def _read(self, timeout_s, memory_limit_bytes):
    """The worker's next JSON line, or a dict saying why there is none."""
    deadline = time.monotonic() + timeout_s
    peak = 0
    while True:
      ready, _, _ = select.select([self.process.stdout], [], [], 0.02)
      rss = self._rss_bytes()
      peak = max(peak, rss)
      self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
      if ready:
        line = self.process.stdout.readline()
        if not line:
          return {"outcome": "crash", "detail": "worker died "
                  f"(exit {self.process.wait()})", "peak_rss_bytes": peak}
        reply = json.loads(line)
        reply["peak_rss_bytes"] = peak
        return reply
      if memory_limit_bytes and rss > memory_limit_bytes:
        return {"outcome": "memory", "peak_rss_bytes": peak,
                "detail": f"worker grew to {rss / _GIB:.2f} GiB"}
      if time.monotonic() > deadline:
        return {"outcome": "timeout", "peak_rss_bytes": peak,
                "detail": f"no answer within {timeout_s} s"}

  def run(self, kind, path, time_limit_s, memory_limit_bytes):
    if self.process is None:
      self._start()
    self.process.stdin.write(json.dumps({"kind": kind, "path": str(path)}) +
                             "\n")
    self.process.stdin.flush()
    reply = self._read(time_limit_s, memory_limit_bytes)
    if reply["outcome"] in ("timeout", "memory", "crash"):
      self.stop()
    return reply


def _small_model(architecture, directory):
  """Saves a small untrained, frozen model of `architecture` in `directory`
  (N = 16, M = 24; fixed seed) and returns `directory`."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from balle.models import compression_model  # pylint: disable=import-outside-toplevel
  config = compression_model.ModelConfig(
      architecture=architecture, num_filters=16, latent_channels=24,
      name=f"fuzz-{architecture}")
  tf.random.set_seed(0)
  model = compression_model.model_class(architecture)(config)
  model.freeze_for_coding()
  model.save(directory)
  return directory


def fuzz(cases, seed=0, model_name=None, images=(), time_limit_s=20.0,
         memory_limit_gib=4.0, failures_dir=None, log=print,
         architecture=None):
  """Runs `cases` mutated files and the hostile images; returns a summary
  dict (counts per mutation and outcome, failures, slowest case, peak RSS).
  `architecture` (instead of `model_name`): a small untrained model of that
  architecture, made for the run.
  """
  from balle import pretrained  # pylint: disable=import-outside-toplevel
  counts, failures = {}, []
  slowest = (0.0, None)
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as folder:
    if architecture:
      model_name = _small_model(architecture, os.path.join(folder, "model"))
    model_name = model_name or pretrained.DEFAULT_MODEL
    seeds = seed_files(pretrained.resolve(model_name), images)
    rng = np.random.default_rng(seed)
    worker = _Worker(model_name)
    jobs = [("encode", f"image:{name}", path)
            for name, path in hostile_images(folder).items()]
    names = sorted(MUTATIONS)
    for index in range(cases):
      name = names[index % len(names)]
      data = MUTATIONS[name](rng, seeds[int(rng.integers(0, len(seeds)))],
                             seeds)
      path = pathlib.Path(folder) / f"case{index:05d}_{name}.balle"
      path.write_bytes(data)
      jobs.append(("decode", name, path))
    try:
      for kind, name, path in jobs:
        reply = worker.run(kind, path, time_limit_s, memory_limit_gib * _GIB)
        wall_s = reply.get("time_s", time_limit_s)
        if wall_s > slowest[0]:
          slowest = (wall_s, f"{path.name}: {reply['detail'][:120]}")
        key = (name, reply["outcome"])
        counts[key] = counts.get(key, 0) + 1
        if reply["outcome"] not in ("ok", "rejected"):
          failures.append(f"{path.name}: {reply['outcome']}: "
                          f"{reply['detail']}")
          if failures_dir:
            os.makedirs(failures_dir, exist_ok=True)
            (pathlib.Path(failures_dir) / path.name).write_bytes(
                path.read_bytes())
    finally:
      worker.stop()
  summary = {
      "cases": len(jobs), "mutated_files": cases,
      "hostile_images": len(jobs) - cases,
      "counts": {f"{n} {o}": c for (n, o), c in sorted(counts.items())},
      "failures": failures, "slowest_case_s": round(slowest[0], 3),
      "slowest_case": slowest[1],
      "peak_worker_rss_gib": round(worker.peak_rss_bytes / _GIB, 3),
      "wall_time_s": round(time.perf_counter() - start, 1),
  }
  log(json.dumps(summary, indent=2))
  return summary


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", type=int, default=500)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--model", default=None)
  parser.add_argument("--architecture", default=None,
                      help="fuzz files of a small untrained model of this "
                      "architecture (e.g. bmshj2018) instead of --model")
  parser.add_argument("--images", default=None,
                      help="folder of images to code as extra seed files")
  parser.add_argument("--time_limit_s", type=float, default=20.0)
  parser.add_argument("--memory_limit_gib", type=float, default=4.0)
  parser.add_argument("--failures_dir", default=None,
                      help="copy failing cases here")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    _worker(args.model)
    return 0
  images = ()
  if args.images:
    from balle.io.image_io import IMAGE_SUFFIXES  # pylint: disable=import-outside-toplevel
    images = sorted(str(p) for p in pathlib.Path(args.images).iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES)
  summary = fuzz(args.cases, args.seed, args.model, images, args.time_limit_s,
                 args.memory_limit_gib, args.failures_dir,
                 architecture=args.architecture)
  return 1 if summary["failures"] else 0


if __name__ == "__main__":
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
  sys.exit(main())
