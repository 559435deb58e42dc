"""Training patches streamed from image files by tf.data (`PatchStream`), for
training sets whose decoded pixels do not fit the memory budget
(balle.data.input_pipeline chooses between this and
balle.data.patches.PatchSampler).

    files (under tf.distribute: this input pipeline's share)
      shuffled anew each epoch, repeated
      decoded in parallel, PATCHES_PER_IMAGE patches drawn from each
      shuffle buffer of SHUFFLE_PATCHES patches
      batches of batchsize, float32 on the 0..255 scale, prefetched

Files are decoded by balle.data.files.read_channels (Pillow, in a
tf.py_function: Pillow decodes every suffix balle.io.image_io accepts, TIFF and
WebP too, and releases Python's lock while it decodes), and patches are drawn by
balle.data.patches.draw_patch, so both pipelines give the same channels, crops,
random downsampling and flips. Only the images being decoded and the shuffle
buffer are in memory at any time.

Each decoded image gives PATCHES_PER_IMAGE patches, which amortizes its
decoding over a batch of 8: Pillow takes about 14 ms of CPU time per image
of ../shared/data/train (mostly small JPEGs, some 1-Mpix PNGs) and 37 ms per
1600x1200 JPEG, against ~0.3 CPU s for a default training step
(benchmarks/README.md, "Input pipeline"). Every file is visited once per
epoch, so, as in memory, small and large images contribute equally many
patches; the shuffle buffer mixes the patches of 128 images.

A file that cannot be decoded (truncated, corrupt, removed) is skipped for
the rest of the run with one warning naming it; if none of the files can be
decoded, the stream raises ValueError. Given the seed, the stream is
deterministic: the file order, and each image's patches, seeded by its place
in the stream.
"""

import threading

import numpy as np
import tensorflow as tf

from balle.data.files import read_channels
from balle.data.files import shard_files
from balle.data.files import warn_skipped
from balle.data.patches import draw_patch

# Patches drawn from each decoded image (see the module doc).
PATCHES_PER_IMAGE = 8
# Patches in the shuffle buffer: those of SHUFFLE_PATCHES / PATCHES_PER_IMAGE
# images; 48 MiB at 128x128 RGB, 192 MiB at 256x256.
SHUFFLE_PATCHES = 1024


class PatchStream:
  """Endless random patches of image files, decoded as they are needed.

  Same patches and the same `dataset()` as balle.data.patches.PatchSampler
  (which holds the decoded images in memory instead). Files are expected at
  least `patchsize` on each side (balle.data.input_pipeline drops smaller ones
  from their headers); a smaller one is skipped with a warning.

  Args:
    files: image files (any suffix of balle.io.image_io.IMAGE_SUFFIXES).
    patchsize, batchsize: side of the patches in px, patches per batch.
    seed: int or tuple of ints (numpy's seed), for file order and patches.
    random_downsample: balle.data.patches.draw_patch's.
    channels: 1 or 3 (gray repeated to RGB, RGB reduced to luma).
    patches_per_image, shuffle_patches: see the module constants.
  """

  def __init__(self, files, patchsize, batchsize, seed=0,
               random_downsample=False, channels=3,
               patches_per_image=PATCHES_PER_IMAGE,
               shuffle_patches=SHUFFLE_PATCHES):
    if channels not in (1, 3):
      raise ValueError(f"channels must be 1 or 3, got {channels}")
    self.files = list(files)
    self.patchsize = patchsize
    self.batchsize = batchsize
    self.channels = channels
    self.random_downsample = random_downsample
    self.patches_per_image = patches_per_image
    self.shuffle_patches = shuffle_patches
    self.seed = seed
    self.skipped = set()
    self._skipped_lock = threading.Lock()

  def dataset(self, input_context=None):
    """Endless tf.data.Dataset of float32 batches on the 0..255 scale.

    With a tf.distribute.InputContext (`distribute_datasets_from_function`)
    the stream's files are sharded among the input pipelines
    (balle.data.files.shard_files), each seeded by its index, and
    the batches are the per-replica share of `batchsize`. tf.distribute's
    automatic sharding is turned off: the files are sharded here.
    """
    files, batchsize, pipeline = self.files, self.batchsize, 0
    if input_context is not None:
      pipeline = input_context.input_pipeline_id
      files = shard_files(files, input_context.num_input_pipelines,
                          pipeline)
      batchsize = input_context.get_per_replica_batch_size(self.batchsize)
    file_seed, patch_seed = (int(v) for v in np.random.default_rng(
        (*np.atleast_1d(self.seed), pipeline)).integers(
            2 ** 31, size=2))
    names = tf.data.Dataset.from_tensor_slices(files).shuffle(
        len(files), seed=file_seed, reshuffle_each_iteration=True)
    names = tf.data.Dataset.zip((names.repeat(), tf.data.Dataset.counter()))
    p, c = self.patchsize, self.channels

    def decode(name, index):
      out = self.patches_of(name.numpy().decode(), (patch_seed, int(index)))
      if not len(out) and self.skipped.issuperset(files):
        raise ValueError(f"none of the {len(files)} training files can be "
                         "used (warnings above)")
      return out

    def patches(name, index):
      out = tf.py_function(decode, [name, index], tf.uint8)
      return tf.ensure_shape(out, [None, p, p, c])

    stream = names.map(patches, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).unbatch()
    stream = stream.shuffle(self.shuffle_patches, seed=patch_seed)
    stream = stream.batch(batchsize, drop_remainder=True)
    stream = stream.map(lambda x: tf.cast(x, tf.float32))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
    return stream.prefetch(tf.data.AUTOTUNE).with_options(options)

  def patches_of(self, path, seed):
    """uint8 [patches_per_image, p, p, C] patches of the file at `path`
    (numpy seed `seed`), or [0, p, p, C] if it cannot be used."""
    p = self.patchsize
    none = np.zeros((0, p, p, self.channels), np.uint8)
    if path in self.skipped:
      return none
    try:
      image = read_channels(path, self.channels)
      if min(image.shape[:2]) < p:
        raise ValueError(f"{image.shape[1]}x{image.shape[0]} is smaller than "
                         f"the patch size {p}")
    except (ValueError, OSError) as error:
      # Files are decoded in parallel: only the first failure warns.
      with self._skipped_lock:
        first = path not in self.skipped
        self.skipped.add(path)
      if first:
        warn_skipped(path, f"{error}; skipped for the rest of the run")
      return none
    rng = np.random.default_rng(seed)
    return np.stack([draw_patch(image, p, rng, self.random_downsample)
                     for _ in range(self.patches_per_image)])
