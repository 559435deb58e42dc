"""Image files into arrays, and random training patches drawn in memory.

`load_images` is the project's one way to turn a list of image files into
uint8 arrays with a chosen channel count (training, validation and
balle.evaluation use it); `read_channels` decodes one file (through
image_io.read_image), for the in-memory and the streaming pipeline alike.

The paper (Sec. 4) trains on random 256x256 crops of natural images; here the
patch size is a flag. `draw_patch` makes one patch: a random crop (with
`random_downsample` of a larger region, resized), flipped left-right with
probability 1/2. `PatchSampler` draws batches of them from images decoded
once into memory, in a background thread (tf.data prefetch) while the
training step runs; balle.streaming.PatchStream draws the same patches from
files decoded on the fly, and balle.input_pipeline chooses between the two.

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


# Largest factor of random_downsample (draw_patch).
MAX_DOWNSAMPLE = 4.0


def draw_patch(image, patchsize, rng, random_downsample=False):
  """A random uint8 patch [patchsize, patchsize, C] of `image`: a crop at a
  uniform position, flipped left-right with probability 1/2.

  With `random_downsample` (the paper's data recipe, Sec. 4), the patch is
  a square region of side f * patchsize resized to patchsize (Pillow's
  antialiased Lanczos filter), f log-uniform in [1, min(MAX_DOWNSAMPLE,
  shorter side / patchsize)]: downsampling averages away JPEG blocking,
  chroma subsampling and sensor noise, and packs more detail per pixel.
  `image` must be at least patchsize on each side; `rng` is a numpy
  Generator.
  """
  side = _region_side(image, patchsize, rng, random_downsample)
  y = rng.integers(image.shape[0] - side + 1)
  x = rng.integers(image.shape[1] - side + 1)
  patch = _resized(image[y:y + side, x:x + side], patchsize)
  return patch[:, ::-1] if rng.integers(2) else patch


def _region_side(image, patchsize, rng, random_downsample):
  """Side of the region a patch is made from: patchsize, or f times it
  with random_downsample (draw_patch)."""
  if not random_downsample:
    return patchsize
  shorter = min(image.shape[:2])
  largest = min(MAX_DOWNSAMPLE, shorter / patchsize)
  factor = np.exp(rng.uniform(0, np.log(largest)))
  return min(int(round(patchsize * factor)), shorter)


class PatchSampler:
  """Draws batches of random patches (`draw_patch`) from arrays in memory.

  Images are drawn uniformly, then a patch of the image, so small and large
  images contribute equally many patches.
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

  def batch(self, batchsize=None, rng=None):
    """uint8 array [batchsize, patchsize, patchsize, channels] (default:
    the sampler's batch size and generator)."""
    batchsize = batchsize or self.batchsize
    rng = self.rng if rng is None else rng
    p = self.patchsize
    out = np.empty((batchsize, p, p, self.channels), np.uint8)
    for k, i in enumerate(rng.integers(len(self.images), size=batchsize)):
      out[k] = draw_patch(self.images[i], p, rng, self.random_downsample)
    return out

  def __iter__(self):
    while True:
      yield self.batch()

  def dataset(self, prefetch=4, input_context=None):
    """Endless tf.data.Dataset of float32 batches on the 0..255 scale.

    With a tf.distribute.InputContext (`distribute_datasets_from_function`)
    the batches of this input pipeline's replicas: every pipeline draws the
    same global batches of `batchsize` (the same seed), keeps its
    consecutive share and splits it into per-replica batches, so a step
    trains on the same patches whatever the number of workers and replicas.
    """
    pipelines, index, batchsize = 1, 0, self.batchsize
    if input_context is not None:
      pipelines = input_context.num_input_pipelines
      index = input_context.input_pipeline_id
      batchsize = input_context.get_per_replica_batch_size(self.batchsize)
    share = self.batchsize // pipelines

    def batches():
      for batch in self:
        yield from np.split(batch[index * share:(index + 1) * share],
                            share // batchsize)

    p = self.patchsize
    spec = tf.TensorSpec([batchsize, p, p, self.channels], tf.uint8)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=spec)
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
