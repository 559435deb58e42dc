"""Curating folders of photographs into a clean training set.

Used by experiments/prepare_extra_photos.py (data/README.md, "Extra training
photographs"). Each candidate file is

1. kept only if it decodes to RGB, its shorter side is at least `min_side`
   (the training patch) and, for a JPEG, its mean luma quantization step is
   at most `max_luma_quant_step` (~4.6 is JPEG quality ~96; coarser files
   carry block artifacts a codec should not learn), as in
   experiments/prepare_photos.py;
2. dropped if its decoded pixels equal an image seen before (SHA-256 of the
   pixels), or if it is a near-copy of one: the 32x32 grey thumbnails,
   normalized to zero mean and unit variance, correlate above
   `near_duplicate_correlation` (0.95 catches rescaled, recompressed and
   slightly cropped copies; different photographs score far lower). The
   reference folders (the project's other training sets, Kodak, held-out
   sets) seed this index, so no copy of them gets in;
3. written to the output folder: unchanged if it has at most `max_pixels`
   pixels, else downsampled with a Lanczos filter so that its shorter side
   is `max_short_side` and stored as PNG (decoding the whole training set
   into memory then stays affordable, and downsampling also removes what
   sensor noise and compression the original carries). Lossless files that
   are not PNG (TIFF, BMP, PPM) are stored as PNG too.
"""

import dataclasses
import hashlib
import os
import shutil

import numpy as np
from PIL import Image

THUMBNAIL_SIDE = 32


@dataclasses.dataclass
class CurationConfig:
  min_side: int = 256
  max_luma_quant_step: float = 5.0
  max_pixels: int = 4_000_000
  max_short_side: int = 1200
  near_duplicate_correlation: float = 0.95


def luma_quant_step(image):
  """Mean of the first (luma) JPEG quantization table, or None."""
  tables = getattr(image, "quantization", None)
  if not tables:
    return None
  return float(np.mean(tables[0]))


def rejection_reason(image, config):
  """Why an opened PIL image is not a clean training photo, or None."""
  if image.mode != "RGB":
    return f"mode {image.mode}"
  if min(image.size) < config.min_side:
    return "small"
  step = luma_quant_step(image)
  if step is not None and step > config.max_luma_quant_step:
    return "jpeg quality"
  return None


def thumbnail_signature(pixels):
  """Unit-norm vector of the zero-mean 32x32 grey thumbnail of `pixels`."""
  grey = Image.fromarray(pixels).convert("L").resize(
      (THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.BILINEAR)
  vector = np.asarray(grey, np.float32).ravel()
  vector -= vector.mean()
  norm = np.linalg.norm(vector)
  return vector / norm if norm > 0 else vector


def pixel_hash(pixels):
  return hashlib.sha256(
      str(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes()
  ).hexdigest()


class DuplicateIndex:
  """Exact (pixel hash) and near (thumbnail correlation) duplicates."""

  def __init__(self, near_duplicate_correlation=0.95):
    self.threshold = near_duplicate_correlation
    self._hashes = {}
    self._signatures = np.zeros((1024, THUMBNAIL_SIDE ** 2), np.float32)
    self._names = []

  def __len__(self):
    return len(self._names)

  def match(self, pixels):
    """(kind, name) of an image `pixels` duplicates, or None."""
    digest = pixel_hash(pixels)
    if digest in self._hashes:
      return "exact", self._hashes[digest]
    if not len(self._names):
      return None
    correlation = (self._signatures[:len(self._names)] @
                   thumbnail_signature(pixels))
    best = int(np.argmax(correlation))
    if correlation[best] > self.threshold:
      return "near", self._names[best]
    return None

  def add(self, pixels, name):
    self._hashes[pixel_hash(pixels)] = name
    if len(self._names) == len(self._signatures):
      self._signatures = np.concatenate(
          [self._signatures, np.zeros_like(self._signatures)])
    self._signatures[len(self._names)] = thumbnail_signature(pixels)
    self._names.append(name)


def downsampled(image, config):
  """`image` with shorter side `max_short_side` if it is too large."""
  width, height = image.size
  if width * height <= config.max_pixels:
    return image
  scale = config.max_short_side / min(width, height)
  if scale >= 1:
    return image
  size = (max(1, round(width * scale)), max(1, round(height * scale)))
  return image.resize(size, Image.LANCZOS)


def output_name(relative_path, resized):
  """File name in the output folder for a source file's relative path."""
  stem, suffix = os.path.splitext(relative_path.replace(os.sep, "_"))
  if resized or suffix.lower() not in (".png", ".jpg", ".jpeg"):
    suffix = ".png"
  return stem + suffix


def curate(files, root, output_dir, index, config, log=print):
  """Writes the clean, new photographs among `files` to `output_dir`.

  `files` are paths under `root` (their paths relative to it name the
  output files). `index` is a DuplicateIndex, updated with every image
  written. Returns a dict: "kept" (count), "megapixels" (of the written
  images), "rejected" (reason -> count) and "duplicates" (list of
  (file, kind, earlier name)).
  """
  os.makedirs(output_dir, exist_ok=True)
  stats = {"kept": 0, "megapixels": 0.0, "rejected": {}, "duplicates": []}

  def reject(reason):
    stats["rejected"][reason] = stats["rejected"].get(reason, 0) + 1

  for path in files:
    relative = os.path.relpath(path, root)
    try:
      with Image.open(path) as image:
        reason = rejection_reason(image, config)
        if reason:
          reject(reason)
          continue
        image.load()
        pixels = np.asarray(image)
        duplicate = index.match(pixels)
        if duplicate:
          reject(duplicate[0] + " duplicate")
          stats["duplicates"].append((relative,) + duplicate)
          continue
        smaller = downsampled(image, config)
        resized = smaller is not image
        name = output_name(relative, resized)
        destination = os.path.join(output_dir, name)
        if resized or not name.lower().endswith(
            os.path.splitext(path)[1].lower()):
          smaller.save(destination)
        else:
          shutil.copyfile(path, destination)
        index.add(pixels, os.path.join(os.path.basename(output_dir), name))
        stats["kept"] += 1
        stats["megapixels"] += smaller.size[0] * smaller.size[1] / 1e6
    except (OSError, ValueError, Image.DecompressionBombError) as error:
      log(f"unreadable {relative}: {error}")
      reject("unreadable")
  return stats
