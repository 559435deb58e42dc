"""Rate-distortion measurement of any codec on an image set, and its records.

One measurement codes one image for real: encode to the complete file bytes,
decode them, then compare the decoded pixels with the original:

    bpp = 8 * len(file bytes) / (H * W)        (headers and checksums included)
    PSNR, MS-SSIM, MS-SSIM dB                   (balle.evaluation.metrics, RGB)
    encode_time_s, decode_time_s                wall time of the two calls

A codec setting (a model's lambda, a JPEG quality, ...) is summarized by the
mean over images of each per-image value: PSNR is computed per image and then
averaged, as in the published Kodak curves; "ms-ssim-rgb" is the mean per-image
MS-SSIM, and its dB value is taken of that mean (the published convention).

Results files follow CompressAI's layout, one entry per setting sorted by bpp:

    {"name": ..., "description": ...,
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "encoding_time": [...], "decoding_time": [...]},
     "settings": [...], "setting_name": ..., "num_images": N, "image_set": ...,
     "kind": "model" | "measured", "codec": ...}

(the keys after "results" are this project's additions; non-finite numbers
are written as null). Per-image values go to a CSV file with one row per image.

Which images to measure, and how to label the curves, is the caller's choice:
experiments/kodak.py sets up the project's Kodak comparison.
"""

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import time

import numpy as np
from absl import logging

from balle import pretrained
from balle.coding import codec as codec_lib
from balle.data import files
from balle.evaluation import metrics
from balle.io import safe_write
from balle.io.image_io import IMAGE_SUFFIXES

RESULT_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time",
               "decoding_time")


@dataclasses.dataclass(frozen=True)
class ImageResult:
  """One image coded with one codec setting."""
  codec: str
  setting: object
  image: str
  height: int
  width: int
  num_bytes: int
  bpp: float
  mse_255: float
  psnr_rgb: float
  ms_ssim_rgb: float
  ms_ssim_db: float
  encode_time_s: float
  decode_time_s: float


@dataclasses.dataclass(frozen=True)
class RDPoint:
  """Means over the images of one codec setting."""
  setting: object
  num_images: int
  bpp: float
  psnr_rgb: float
  ms_ssim_rgb: float
  ms_ssim_db: float
  encode_time_s: float
  decode_time_s: float


# -- image sets ---------------------------------------------------------------


def list_image_files(directory, max_images=0):
  """Sorted paths of the images in `directory` (the first max_images)."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"image folder {directory} does not exist")
  paths = sorted(
      os.path.join(directory, name) for name in os.listdir(directory)
      if name.lower().endswith(IMAGE_SUFFIXES))
  if not paths:
    raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in "
                            f"{directory}")
  return paths[:max_images] if max_images > 0 else paths


def image_set_hash(paths):
  """SHA-256 (hex) over the names and bytes of the files, in order."""
  digest = hashlib.sha256()
  for path in paths:
    digest.update(os.path.basename(path).encode() + b"\0")
    with open(path, "rb") as f:
      digest.update(hashlib.sha256(f.read()).digest())
  return digest.hexdigest()


def named_images(paths):
  """[(file name, uint8 array [H, W, C])], read by balle.data.files.load_images
  with the channels C (1 or 3) the files store."""
  images, _ = files.load_images(paths, channels=None)
  return [(os.path.basename(path), image)
          for path, image in zip(paths, images)]


# -- measurement --------------------------------------------------------------


def measure_image(codec, setting, image_name, image, encode, decode):
  """Codes `image` with encode (array -> bytes) and decode (bytes -> array)."""
  start = time.perf_counter()
  data = encode(image)
  encoded = time.perf_counter()
  if not isinstance(data, (bytes, bytearray)):
    raise TypeError(f"{codec}: encoder returned {type(data).__name__}, "
                    "not bytes")
  reconstruction = decode(data)
  decoded = time.perf_counter()
  reconstruction = np.asarray(reconstruction)
  if reconstruction.shape != image.shape:
    raise ValueError(f"{codec} {setting} {image_name}: decoded shape "
                     f"{reconstruction.shape} != original {image.shape}")
  height, width = image.shape[:2]
  ms_ssim = metrics.ms_ssim(image, reconstruction)
  return ImageResult(
      codec=codec, setting=setting, image=image_name, height=height,
      width=width, num_bytes=len(data),
      bpp=metrics.bits_per_pixel(len(data), height, width),
      mse_255=metrics.mse_255(image, reconstruction),
      psnr_rgb=metrics.psnr_rgb(image, reconstruction),
      ms_ssim_rgb=ms_ssim, ms_ssim_db=metrics.ms_ssim_db(ms_ssim),
      encode_time_s=encoded - start, decode_time_s=decoded - encoded)


def measure_setting(codec, setting, images, encode, decode,
                    log_each_image=False):
  """Measures every (name, image) in `images`; logs a summary line (and one
  line per image with log_each_image)."""
  start = time.perf_counter()
  results = []
  for index, (name, image) in enumerate(images):
    result = measure_image(codec, setting, name, image, encode, decode)
    results.append(result)
    if log_each_image:
      logging.info("  [%d/%d] %s: %.4f bpp, %.3f dB, encode %.2f s, decode "
                   "%.2f s", index + 1, len(images), name, result.bpp,
                   result.psnr_rgb, result.encode_time_s,
                   result.decode_time_s)
  log_setting(results, time.perf_counter() - start)
  return results


def log_setting(results, seconds):
  """Logs one progress line summarizing the results of one setting."""
  point = aggregate(results)[0]
  logging.info("%s [%s]: %d images, %.4f bpp, %.3f dB PSNR, %.5f MS-SSIM "
               "(%.1f s)", results[0].codec, point.setting, len(results),
               point.bpp, point.psnr_rgb, point.ms_ssim_rgb, seconds)


def aggregate(results):
  """Per-setting means of `results` (one codec), sorted by bpp."""
  by_setting = {}
  for result in results:
    by_setting.setdefault(_setting_key(result.setting), []).append(result)
  points = []
  for group in by_setting.values():
    mean = lambda field, g=group: float(np.mean([getattr(r, field) for r in g]))
    ms_ssim = mean("ms_ssim_rgb")
    points.append(RDPoint(
        setting=group[0].setting, num_images=len(group), bpp=mean("bpp"),
        psnr_rgb=mean("psnr_rgb"), ms_ssim_rgb=ms_ssim,
        ms_ssim_db=metrics.ms_ssim_db(ms_ssim),
        encode_time_s=mean("encode_time_s"),
        decode_time_s=mean("decode_time_s")))
  return sorted(points, key=lambda p: p.bpp)


def _setting_key(setting):
  return json.dumps(setting, sort_keys=True, default=str)


# -- models -------------------------------------------------------------------


def load_model(name_or_directory):
  """A trained model from a folder (config.json + weights) or a shipped name."""
  return pretrained.resolve(name_or_directory)


def models_by_family(model_names):
  """{architecture: [names in the order given]} of model names/folders."""
  by_family = {}
  for name in model_names:
    by_family.setdefault(pretrained.architecture_of(name), []).append(name)
  return by_family


def evaluate_families(model_names, images, output_dir, labels,
                      image_set="", one_label=False):
  """evaluate_models once per model family (architecture) of `model_names`,
  the curve of family F labelled labels[F]: into `output_dir` itself when
  all are of one family, else into output_dir/F/ for each. Returns the
  written paths. `one_label`: the labels are one name, so the models must
  be of one family."""
  by_family = models_by_family(model_names)
  if one_label and len(by_family) > 1:
    raise ValueError(f"one curve label for models of {len(by_family)} "
                     f"families ({', '.join(by_family)}): drop --label, or "
                     "evaluate each family on its own")
  unknown = sorted(set(by_family) - set(labels))
  if unknown:
    raise ValueError(f"no curve label for model family {unknown[0]!r}")
  written = []
  for family, names in by_family.items():
    folder = (output_dir if len(by_family) == 1
              else os.path.join(output_dir, family))
    written += evaluate_models(names, images, folder, labels[family],
                               image_set)
  return written


def spread_per_family(model_names, count):
  """Of each family's models in `model_names` (in the order given, e.g. by
  lambda), `count` spread evenly from the first to the last."""
  by_family = models_by_family(model_names)
  chosen = []
  for names in by_family.values():
    if len(names) <= count:
      chosen += names
      continue
    step = (len(names) - 1) / (count - 1) if count > 1 else 0
    chosen += [names[round(i * step)] for i in range(count)]
  return chosen


def measure_model(model, images, label, warm_up=True):
  """Codes every image with `model` (balle.coding.codec); returns ImageResults.

  Results have codec=label and setting=the model's name. With warm_up, the
  first image is coded twice untimed first, so that the one-time tf.function
  tracing does not count as encode or decode time.
  """
  encode = lambda image: codec_lib.compress_image(model, image)
  decode = lambda data: codec_lib.decompress_image(data, model)
  if warm_up and images:
    for _ in range(2):
      decode(encode(images[0][1]))
  return measure_setting(label, model.config.name, images, encode, decode,
                         log_each_image=True)


def models_document(models, results, label, image_set=""):
  """CompressAI-layout results for several models, one entry per model;
  "model_configs" holds each model's configuration (its config.json
  "model" part), in the order of the points; "codec" is the models' family
  (architecture) when they share one, else "balle"."""
  points = aggregate(results)
  by_name = {model.config.name: model.config for model in models}
  configs = [by_name[point.setting] for point in points]
  description = ("balle.coding.codec: complete .balle files (header + "
                 "payload + checksum); models "
                 + ", ".join(c.name for c in configs))
  families = {c.architecture for c in configs}
  return results_document(
      label, description, points, setting_name="model", image_set=image_set,
      kind="model", codec=families.pop() if len(families) == 1 else "balle",
      model_configs=[dataclasses.asdict(c) for c in configs])


# -- files --------------------------------------------------------------------


def _finite_or_none(value):
  return value if isinstance(value, (int, float)) and math.isfinite(value) \
      else None


def result_to_dict(result):
  """ImageResult -> JSON-safe dict (non-finite floats become None)."""
  return {key: _finite_or_none(value) if isinstance(value, float) else value
          for key, value in dataclasses.asdict(result).items()}


def result_from_dict(values):
  """Inverse of result_to_dict (None comes back as NaN)."""
  return ImageResult(**{key: math.nan if value is None else value
                        for key, value in values.items()})


def results_document(name, description, points, setting_name="setting",
                     image_set="", **extra):
  """The CompressAI-layout dict for RDPoints (sorted by bpp here).

  `extra` keys (e.g. kind="model", codec="jpeg420") are added at top level.
  """
  points = sorted(points, key=lambda p: p.bpp)
  columns = {
      "bpp": [p.bpp for p in points],
      "psnr-rgb": [p.psnr_rgb for p in points],
      "ms-ssim-rgb": [p.ms_ssim_rgb for p in points],
      "encoding_time": [p.encode_time_s for p in points],
      "decoding_time": [p.decode_time_s for p in points],
  }
  return {
      "name": name,
      "description": description,
      "results": {key: [_finite_or_none(v) for v in values]
                  for key, values in columns.items()},
      "settings": [p.setting for p in points],
      "setting_name": setting_name,
      "num_images": min((p.num_images for p in points), default=0),
      "image_set": image_set,
      **extra,
  }


def write_json(path, document):
  """Writes `document` as indented JSON (atomically, replacing `path`)."""
  text = json.dumps(document, indent=2, allow_nan=False) + "\n"
  _write_text(path, text)


def read_results(path):
  """Reads a results JSON; nulls in "results" come back as NaN."""
  with open(path) as f:
    document = json.load(f)
  if "name" not in document or "results" not in document:
    raise ValueError(f"{path}: not a results file (needs name and results)")
  results = document["results"]
  if "bpp" not in results:
    raise ValueError(f"{path}: results have no bpp")
  for key, values in results.items():
    if isinstance(values, list):
      results[key] = [math.nan if v is None else v for v in values]
  return document


CSV_FIELDS = tuple(field.name for field in dataclasses.fields(ImageResult))


def write_csv(path, results):
  """One row per ImageResult, columns CSV_FIELDS."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
  writer.writeheader()
  for result in results:
    writer.writerow(dataclasses.asdict(result))
  _write_text(path, buffer.getvalue())


def _write_text(path, text):
  """Writes UTF-8 `text` atomically, replacing `path`; creates its folder."""
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  safe_write.write_file_atomic(path, lambda f: f.write(text.encode("utf-8")),
                               overwrite=True)


def safe_file_name(name):
  """`name` with characters other than [A-Za-z0-9._-] replaced by '_'."""
  return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def evaluate_models(model_names, images, output_dir, label, image_set=""):
  """Loads and measures each model; writes results.json + per_image.csv.

  `label` names the curve (the "name" of results.json and the codec of each
  result)."""
  models, results = [], []
  for name in model_names:
    model = load_model(name)
    if any(m.config.name == model.config.name for m in models):
      raise ValueError(f"two models are named {model.config.name!r}; model "
                       "names must differ to tell their results apart")
    logging.info("model %s on %d images: %s", model.config.name, len(images),
                 model.config)
    models.append(model)
    results += measure_model(model, images, label)
  json_path = os.path.join(output_dir, "results.json")
  csv_path = os.path.join(output_dir, "per_image.csv")
  write_json(json_path, models_document(models, results, label, image_set))
  write_csv(csv_path, results)
  return [json_path, csv_path]
