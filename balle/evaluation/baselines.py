"""Classic image codecs through Pillow, measured like the project's models.

Every codec encodes a uint8 array to the complete file Pillow writes (all of
its bytes count towards bpp) and decodes it back with Pillow:

- jpeg420, jpeg444: libjpeg-turbo baseline JPEG, optimized Huffman tables
  (optimize=True), chroma 4:2:0 or 4:4:4, quality 5..90.
- j2k: JPEG 2000 codestream (.j2k) by OpenJPEG, 9/7 irreversible wavelet with
  the irreversible color transform (mct=1), rate targets in bpp turned into
  compression ratios 8 * C / bpp (quality_mode="rates"), other settings at
  OpenJPEG's defaults (6 resolutions, 64x64 code blocks, one layer).
- j2k53: the same with the 5/3 reversible wavelet and reversible color
  transform, OpenJPEG's command-line default; checks against the published
  "j2k-opj5" Kodak curve.
- webp: libwebp lossy, method=6 (slowest, best compression), quality 0..90.
- avif: libavif with the AV1 encoder Pillow is built with, chroma 4:4:4,
  speed 6 (libavif's default), one thread, quality 5..85.
- heic: HEVC (x265 through libheif) in HEIF via the optional pillow-heif
  package, chroma 4:4:4 (like the published BPG 4:4:4 curve, also HEVC),
  quality 10..60 (x265 reaches ~4 bpp at quality 80 on Kodak); skipped with
  a note when pillow-heif is not installed.

Results are cached per codec in a JSON file whose name holds a hash of the
image set, the codec, its settings and the library version, so a rerun on the
same images with the same libraries codes nothing. (Bump CACHE_FORMAT_VERSION
when an encoder's options change.)
"""

import dataclasses
import hashlib
import io
import json
import os
import time

import numpy as np
import PIL
from absl import logging
from PIL import Image, features

from balle import evaluation

CACHE_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Codec:
  """A Pillow codec and the quality settings it is measured at."""
  name: str
  label: str
  setting_name: str
  settings: tuple
  quick_settings: tuple
  encode: object  # (uint8 array [H, W, C], setting) -> bytes
  feature: str    # Pillow feature (or module) that must be available

  def available(self):
    """Whether the library behind this codec can be used here."""
    if self.feature == "pillow_heif":
      return _pillow_heif() is not None
    return bool(features.check(self.feature))

  def library_version(self):
    """Pillow version + the codec library's version, for cache keys."""
    if self.feature == "pillow_heif":
      heif = _pillow_heif()
      if heif is None:
        return f"pillow-{PIL.__version__}/pillow-heif-missing"
      return (f"pillow-{PIL.__version__}/pillow-heif-{heif.__version__}/"
              f"libheif-{heif.libheif_version()}")
    version = f"pillow-{PIL.__version__}/{self.feature}-" + str(
        features.version(self.feature))
    if self.feature == "jpg" and features.check_feature("libjpeg_turbo"):
      version += f"/libjpeg-turbo-{features.version('libjpeg_turbo')}"
    return version


def _to_pil(image):
  image = np.asarray(image)
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def decode(data, channels):
  """Any Pillow-readable bytes -> uint8 array [H, W, channels]."""
  with Image.open(io.BytesIO(data)) as pil_image:
    pil_image.load()
    pil_image = pil_image.convert("L" if channels == 1 else "RGB")
  array = np.asarray(pil_image, dtype=np.uint8)
  return array[..., None] if channels == 1 else array


def _save(pil_image, image_format, **options):
  buffer = io.BytesIO()
  pil_image.save(buffer, format=image_format, **options)
  return buffer.getvalue()


def _encode_jpeg(subsampling):
  def encode(image, quality):
    return _save(_to_pil(image), "JPEG", quality=int(quality),
                 subsampling=subsampling, optimize=True)
  return encode


def _encode_j2k(irreversible):
  def encode(image, bpp):
    ratio = 8.0 * image.shape[-1] / float(bpp)
    return _save(_to_pil(image), "JPEG2000", no_jp2=True,
                 irreversible=irreversible, mct=int(image.shape[-1] == 3),
                 quality_mode="rates", quality_layers=[ratio])
  return encode


def _encode_webp(image, quality):
  pil_image = _to_pil(image)
  if pil_image.mode == "L":
    pil_image = pil_image.convert("RGB")  # libwebp stores color only
  return _save(pil_image, "WEBP", quality=int(quality), method=6)


def _encode_avif(image, quality):
  pil_image = _to_pil(image)
  subsampling = "4:0:0" if pil_image.mode == "L" else "4:4:4"
  return _save(pil_image, "AVIF", quality=int(quality), speed=6,
               subsampling=subsampling, max_threads=1)


def _pillow_heif():
  try:
    import pillow_heif  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  pillow_heif.register_heif_opener()
  return pillow_heif


def _encode_heic(image, quality):
  _pillow_heif()
  pil_image = _to_pil(image)
  if pil_image.mode == "L":
    pil_image = pil_image.convert("RGB")
  return _save(pil_image, "HEIF", quality=int(quality), chroma=444)


_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90)
_J2K_BPP = (0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
_J2K_QUICK = (0.2, 0.5, 1.2)

CODECS = (
    Codec("jpeg420", "JPEG 4:2:0 (libjpeg-turbo)", "quality", _QUALITIES,
          (10, 40, 80), _encode_jpeg("4:2:0"), "jpg"),
    Codec("jpeg444", "JPEG 4:4:4 (libjpeg-turbo)", "quality", _QUALITIES,
          (10, 40, 80), _encode_jpeg("4:4:4"), "jpg"),
    Codec("j2k", "JPEG 2000 9/7 (OpenJPEG)", "target_bpp", _J2K_BPP,
          _J2K_QUICK, _encode_j2k(irreversible=True), "jpg_2000"),
    Codec("j2k53", "JPEG 2000 5/3 (OpenJPEG)", "target_bpp", _J2K_BPP,
          _J2K_QUICK, _encode_j2k(irreversible=False), "jpg_2000"),
    Codec("webp", "WebP (libwebp)", "quality",
          (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90), (5, 40, 80),
          _encode_webp, "webp"),
    Codec("avif", "AVIF 4:4:4 (libavif/aom)", "quality",
          (5, 15, 25, 35, 45, 55, 65, 75, 80, 85), (25, 50, 75),
          _encode_avif, "avif"),
    Codec("heic", "HEIC 4:4:4 (libheif/x265)", "quality",
          (10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60), (20, 35, 50),
          _encode_heic, "pillow_heif"),
)
CODECS_BY_NAME = {codec.name: codec for codec in CODECS}
DEFAULT_CODECS = ("jpeg420", "jpeg444", "j2k", "j2k53", "webp", "avif", "heic")


def get_codecs(names):
  """The Codecs named in `names` (raises KeyError naming the choices)."""
  unknown = [name for name in names if name not in CODECS_BY_NAME]
  if unknown:
    raise KeyError(f"unknown codec(s) {unknown}; choose from "
                   f"{sorted(CODECS_BY_NAME)}")
  return [CODECS_BY_NAME[name] for name in names]


def cache_key(codec, settings, image_set):
  """Hash of image set, codec, settings, library version and cache format."""
  text = json.dumps([CACHE_FORMAT_VERSION, image_set, codec.name, codec.label,
                     list(settings), codec.library_version()])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_path(cache_dir, codec, settings, image_set):
  return os.path.join(
      cache_dir, f"{codec.name}-{cache_key(codec, settings, image_set)}.json")


def measure_codec(codec, images, settings=None, cache_dir=None, image_set=""):
  """ImageResults of `codec` on `images` at `settings` (default: all).

  With cache_dir and image_set (the image-set hash), results are read from
  and written to a cache file; a cached codec is not run again.
  """
  settings = tuple(codec.settings if settings is None else settings)
  path = None
  if cache_dir and image_set:
    path = _cache_path(cache_dir, codec, settings, image_set)
    if os.path.exists(path):
      with open(path) as f:
        cached = json.load(f)
      logging.info("%s: %d cached results from %s", codec.label,
                   len(cached["images"]), path)
      return [evaluation.result_from_dict(values)
              for values in cached["images"]]
  results = []
  for setting in settings:
    start = time.perf_counter()
    setting_results = [
        evaluation.measure_image(
            codec.label, setting, name, image,
            lambda array, s=setting: codec.encode(array, s),
            lambda data, c=image.shape[-1]: decode(data, c))
        for name, image in images]
    evaluation.log_setting(setting_results, time.perf_counter() - start)
    results += setting_results
  if path:
    evaluation.write_json(path, {
        "codec": codec.name, "library": codec.library_version(),
        "settings": list(settings), "image_set": image_set,
        "images": [evaluation.result_to_dict(r) for r in results]})
  return results


def run(codecs, images, image_set, output_dir, cache_dir=None, quick=False):
  """Measures `codecs` on `images`; writes JSON + CSV per codec.

  Unavailable codecs are skipped with a logged note. Returns written paths.
  """
  cache_dir = cache_dir or os.path.join(output_dir, "cache")
  written = []
  for codec in codecs:
    if not codec.available():
      hint = (" (pip install pillow-heif)" if codec.feature == "pillow_heif"
              else "")
      logging.warning("%s skipped: not available in this Pillow/library "
                      "build%s", codec.label, hint)
      continue
    settings = codec.quick_settings if quick else codec.settings
    results = measure_codec(codec, images, settings, cache_dir, image_set)
    json_path = os.path.join(output_dir, f"{codec.name}.json")
    csv_path = os.path.join(output_dir, f"{codec.name}_per_image.csv")
    description = (f"{codec.label}, {codec.library_version()}, measured by "
                   "balle.evaluation.baselines (bpp from the whole file "
                   "Pillow writes)")
    evaluation.write_json(json_path, evaluation.results_document(
        codec.label, description, evaluation.aggregate(results),
        setting_name=codec.setting_name, image_set=image_set,
        kind="measured", codec=codec.name))
    evaluation.write_csv(csv_path, results)
    written += [json_path, csv_path]
  return written
