"""Image files of a training or test set, and their pixels.

`expand_patterns` and `image_files` list a set's files (glob patterns,
folders, or a .txt list), `split_validation` holds a deterministic part out
for validation: the `num_validation` files whose SHA-256 of the base name is
smallest, which depends on the file names only, never on the order or on
the other files. `shard_files` gives a worker its share.

`load_images` is the project's one way to turn a list of image files into
uint8 arrays with a chosen channel count (training, validation and
balle.evaluation use it); `read_channels` decodes one file (through
balle.io.image_io.read_image), for the in-memory and the streaming pipeline
alike.
"""

import concurrent.futures
import glob
import hashlib
import os
import warnings

from absl import logging
import numpy as np
from PIL import Image

from balle.io import image_io


def expand_patterns(patterns):
  """Sorted image files matching glob patterns (a list or comma-separated).

  A pattern naming a folder matches the images inside it (file names ending
  in one of image_io.IMAGE_SUFFIXES), recursively.
  """
  if isinstance(patterns, str):
    patterns = [patterns]
  files = set()
  for item in patterns:
    for pattern in filter(None, (p.strip() for p in item.split(","))):
      if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**", "*")
      for path in glob.glob(pattern, recursive=True):
        if (path.lower().endswith(image_io.IMAGE_SUFFIXES) and
            os.path.isfile(path)):
          files.add(path)
  return sorted(files)


def image_files(spec):
  """Image paths of `spec`: a .txt file listing one path per line, else glob
  patterns (expand_patterns)."""
  if spec.endswith(".txt"):
    with open(spec) as f:
      return [line.strip() for line in f if line.strip()]
  return expand_patterns(spec)


def _name_hash(path):
  return hashlib.sha256(os.path.basename(path).encode()).hexdigest()


def split_validation(files, num_validation, validation_patterns=()):
  """(training files, validation files).

  Held out are the images matching `validation_patterns` if any are given
  (removed from `files` where both match: a pinned set, which adding
  training folders does not change), else the `num_validation` files with
  the smallest name hashes.
  """
  if validation_patterns:
    validation = expand_patterns(validation_patterns)
    if not validation:
      raise FileNotFoundError(f"no validation images match "
                              f"{validation_patterns}")
    names = {os.path.realpath(f) for f in validation}
    return [f for f in files if os.path.realpath(f) not in names], validation
  if num_validation < 0 or num_validation >= len(files) > 0:
    raise ValueError(f"cannot hold out {num_validation} of {len(files)} images")
  held_out = set(sorted(files, key=_name_hash)[:num_validation])
  return ([f for f in files if f not in held_out],
          [f for f in files if f in held_out])


def shard_files(files, num_shards, shard_index):
  """The files of shard `shard_index` of `num_shards` (e.g. one worker's of
  a multi-worker cluster): every num_shards-th file from the shard_index-th
  on, so that shards are disjoint and together hold every file."""
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard {shard_index} of {num_shards} does not exist")
  shard = list(files)[shard_index::num_shards]
  if not shard:
    raise ValueError(f"shard {shard_index} of {num_shards} holds none of "
                     f"the {len(files)} training files")
  return shard


def read_channels(path, channels):
  """One image file as a uint8 array [H, W, channels] (see load_images);
  ValueError if it cannot be read."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", image_io.ImageConversionWarning)
    image = image_io.read_image(path, drop_alpha=True)
  if channels is None or image.shape[2] == channels:
    return image
  if channels == 3:
    return np.repeat(image, 3, axis=2)
  with Image.fromarray(image) as rgb:
    return np.asarray(rgb.convert("L"))[..., None]


def warn_skipped(path, why):
  """Logs that the training image at `path` is skipped, and `why` (an error
  or text; a leading "<path>: " is not repeated)."""
  why = str(why)
  why = why[len(f"{path}: "):] if why.startswith(f"{path}: ") else why
  logging.warning("skipping training image %s: %s", path, why)


def load_images(files, min_size=0, channels=3, num_threads=2,
                skip_unreadable=False):
  """Decodes `files` in order; returns (images, num_skipped).

  Each image is a uint8 array [H, W, channels]: gray is repeated to RGB or
  RGB reduced to luma as `channels` asks (None: as stored, 1 or 3); alpha is
  dropped. Images with height or width below `min_size` (the patch size) are
  skipped; so are, with `skip_unreadable`, files that cannot be decoded
  (with a warning naming each), which otherwise raise ValueError.
  """
  def read(path):
    try:
      return read_channels(path, channels)
    except (ValueError, OSError) as error:
      if not skip_unreadable:
        raise
      warn_skipped(path, error)
      return None

  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    decoded = list(pool.map(read, files))
  images = [a for a in decoded
            if a is not None and min(a.shape[:2]) >= min_size]
  return images, len(decoded) - len(images)


def crop_to_multiple(image, multiple):
  """Top-left crop of `image` to height and width multiples of `multiple`.

  Validation uses such crops, `multiple` being the model's downsampling
  factor: the transforms downsample with "same" padding, and on other sizes
  the reconstruction is misaligned (-3 to -6 dB measured with bls2017's 16;
  the Kodak images, 768x512, are multiples of 16).
  """
  height, width = image.shape[0], image.shape[1]
  return image[:height - height % multiple, :width - width % multiple]
