"""Image files into arrays, and the training input pipeline (random patches).

`load_images` is the project's one way to turn a list of image files into
uint8 arrays with a chosen channel count (training, validation and
balle.evaluation use it); image_io.read_image decodes each file.

The paper (Sec. 4) trains on random 256x256 crops of natural images; here the
patch size is a flag. Every image is decoded once into a uint8 array; a
background thread (tf.data prefetch) draws batches of random crops, each
flipped left-right with probability 1/2, while the training step runs.

A deterministic part of the training images is held out for validation: the
`num_validation` files whose SHA-256 of the base name is smallest. This
depends on the file names only, never on the order or on the other files.
"""

import concurrent.futures
import glob
import hashlib
import os
import warnings

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf

from balle import image_io


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


def _read_channels(path, channels):
  """One image for load_images (see there)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", image_io.ImageConversionWarning)
    image = image_io.read_image(path, drop_alpha=True)
  if channels is None or image.shape[2] == channels:
    return image
  if channels == 3:
    return np.repeat(image, 3, axis=2)
  with Image.fromarray(image) as rgb:
    return np.asarray(rgb.convert("L"))[..., None]


def load_images(files, min_size=0, channels=3, num_threads=2):
  """Decodes `files` in order; returns (images, num_skipped).

  Each image is a uint8 array [H, W, channels]: gray is repeated to RGB or
  RGB reduced to luma as `channels` asks (None: as stored, 1 or 3); alpha is
  dropped. Images with height or width below `min_size` (the patch size) are
  skipped.
  """
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    decoded = list(pool.map(lambda f: _read_channels(f, channels), files))
  images = [a for a in decoded if min(a.shape[:2]) >= min_size]
  return images, len(decoded) - len(images)


# Largest factor of random_downsample (PatchSampler).
MAX_DOWNSAMPLE = 4.0


class PatchSampler:
  """Draws batches of random patches (crop + left-right flip) from arrays.

  Images are drawn uniformly, then a crop position uniformly within the
  image, so small and large images contribute equally many patches.

  With `random_downsample` (the paper's data recipe, Sec. 4), each patch is
  a square region of side f * patchsize resized to patchsize (Pillow's
  antialiased Lanczos filter), f log-uniform in [1, min(MAX_DOWNSAMPLE,
  shorter side / patchsize)]: downsampling averages away JPEG blocking,
  chroma subsampling and sensor noise, and packs more detail per pixel.
  """

  def __init__(self, images, patchsize, batchsize, seed=0,
               random_downsample=False):
    if not images:
      raise ValueError("no training images large enough for the patch size")
    for image in images:
      if min(image.shape[:2]) < patchsize:
        raise ValueError(f"image of shape {image.shape} is smaller than the "
                         f"patch size {patchsize}")
    self.images = images
    self.patchsize = patchsize
    self.batchsize = batchsize
    self.channels = images[0].shape[2]
    self.random_downsample = random_downsample
    self.rng = np.random.default_rng(seed)

  def batch(self):
    """uint8 array [batchsize, patchsize, patchsize, channels]."""
    p = self.patchsize
    out = np.empty((self.batchsize, p, p, self.channels), np.uint8)
    for k, i in enumerate(self.rng.integers(len(self.images),
                                            size=self.batchsize)):
      image = self.images[i]
      side = self._region_side(image)
      y = self.rng.integers(image.shape[0] - side + 1)
      x = self.rng.integers(image.shape[1] - side + 1)
      patch = _resized(image[y:y + side, x:x + side], p)
      out[k] = patch[:, ::-1] if self.rng.integers(2) else patch
    return out

  def _region_side(self, image):
    """Side of the region a patch is made from: patchsize, or f times it
    with random_downsample."""
    p = self.patchsize
    if not self.random_downsample:
      return p
    largest = min(MAX_DOWNSAMPLE, min(image.shape[:2]) / p)
    factor = np.exp(self.rng.uniform(0, np.log(largest)))
    return min(int(round(p * factor)), min(image.shape[:2]))

  def __iter__(self):
    while True:
      yield self.batch()

  def dataset(self, prefetch=4):
    """Endless tf.data.Dataset of float32 batches on the 0..255 scale."""
    p = self.patchsize
    spec = tf.TensorSpec([self.batchsize, p, p, self.channels], tf.uint8)
    dataset = tf.data.Dataset.from_generator(lambda: iter(self),
                                             output_signature=spec)
    dataset = dataset.map(lambda x: tf.cast(x, tf.float32))
    return dataset.prefetch(prefetch)


def _resized(region, side):
  """uint8 [h, w, C] region resized to [side, side, C] (Lanczos, which
  antialiases when it shrinks); returned as is when it has that size."""
  if region.shape[0] == side and region.shape[1] == side:
    return region
  channels = region.shape[2]
  with Image.fromarray(region[..., 0] if channels == 1 else region) as img:
    resized = np.asarray(img.resize((side, side), Image.LANCZOS))
  return resized.reshape(side, side, channels)


def crop_to_multiple(image, multiple):
  """Top-left crop of `image` to height and width multiples of `multiple`.

  Validation uses such crops, `multiple` being the model's downsampling
  factor: the transforms downsample with "same" padding, and on other sizes
  the reconstruction is misaligned (-3 to -6 dB measured with bls2017's 16;
  the Kodak images, 768x512, are multiples of 16).
  """
  height, width = image.shape[0], image.shape[1]
  return image[:height - height % multiple, :width - width % multiple]


def training_data(patterns, patchsize, batchsize, multiple, num_validation=0,
                  seed=0, channels=3, validation_patterns=(),
                  random_downsample=False):
  """(PatchSampler over training images, list of validation images).

  Logs the number of images found, held out and skipped (smaller than the
  patch). Validation images are cropped to multiples of `multiple` (the
  model's downsampling factor), never skipped.
  """
  files = expand_patterns(patterns)
  if not files:
    raise FileNotFoundError(f"no images ({', '.join(image_io.IMAGE_SUFFIXES)})"
                            f" match {patterns}")
  train_files, validation_files = split_validation(files, num_validation,
                                                   validation_patterns)
  images, num_skipped = load_images(train_files, patchsize, channels)
  validation, _ = load_images(validation_files, 0, channels)
  validation = [crop_to_multiple(a, multiple) for a in validation]
  num_pixels = sum(a.shape[0] * a.shape[1] for a in images)
  logging.info("training images: %d found, %d held out for validation, "
               "%d skipped (smaller than %d px), %d used (%.1f Mpix)",
               len(files), len(validation_files), num_skipped, patchsize,
               len(images), num_pixels / 1e6)
  logging.info("validation images: %s",
               ", ".join(os.path.basename(f) for f in validation_files))
  return PatchSampler(images, patchsize, batchsize, seed,
                      random_downsample), validation
