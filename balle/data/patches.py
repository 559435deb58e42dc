"""Random training patches drawn in memory.

The paper (Sec. 4) trains on random 256x256 crops of natural images; here the
patch size is a flag. `draw_patch` makes one patch: a random crop (with
`random_downsample` of a larger region, resized), flipped left-right with
probability 1/2. `PatchSampler` draws batches of them from images decoded
once into memory (balle.data.files.load_images), in a background thread
(tf.data prefetch) while the training step runs;
balle.data.streaming.PatchStream draws the same patches from files decoded
on the fly, and balle.data.input_pipeline chooses between the two.
"""

import numpy as np
from PIL import Image
import tensorflow as tf


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
