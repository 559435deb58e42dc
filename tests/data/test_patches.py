"""Tests of balle.data.patches: random patches drawn in memory."""

import numpy as np
import pytest
import tensorflow as tf

from balle import data


def test_patches_are_crops_or_mirrored_crops():
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
            rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)]
  sampler = data.PatchSampler(images, patchsize=16, batchsize=64, seed=3)
  batch = sampler.batch()
  assert batch.shape == (64, 16, 16, 3) and batch.dtype == np.uint8

  def windows(image):
    return [image[y:y + 16, x:x + 16]
            for y in range(image.shape[0] - 15)
            for x in range(image.shape[1] - 15)]

  flips = 0
  for patch in batch:
    candidates = [w for image in images for w in windows(image)]
    direct = any(np.array_equal(patch, w) for w in candidates)
    mirrored = any(np.array_equal(patch[:, ::-1], w) for w in candidates)
    assert direct or mirrored
    flips += mirrored and not direct
  assert 0 < flips < len(batch)


def test_sampler_is_reproducible_and_rejects_small_images():
  images = [np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)]
  first = data.PatchSampler(images, 8, 4, seed=5).batch()
  np.testing.assert_array_equal(first, data.PatchSampler(images, 8, 4,
                                                         seed=5).batch())
  with pytest.raises(ValueError):
    data.PatchSampler(images, 33, 4)
  with pytest.raises(ValueError):
    data.PatchSampler([], 8, 4)


def test_sampler_dataset_gives_float_batches():
  images = [np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8)]
  batch = next(iter(data.PatchSampler(images, 28, 3).dataset()))
  assert batch.dtype == tf.float32 and batch.shape == (3, 28, 28, 3)
  assert 0 <= float(tf.reduce_min(batch)) and float(tf.reduce_max(batch)) <= 255
  # Pipeline 1 of 2 (4 replicas): the second half of each global batch, in
  # per-replica batches.
  context = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=1,
                                       num_replicas_in_sync=4)
  whole = iter(data.PatchSampler(images, 28, 8, seed=3).dataset())
  part = iter(data.PatchSampler(images, 28, 8, seed=3).dataset(
      input_context=context))
  for _ in range(2):
    np.testing.assert_array_equal(
        next(whole)[4:], np.concatenate([next(part), next(part)]))


def test_random_downsample_shrinks_larger_regions():
  """A horizontal ramp downsampled by f spans f times the gray levels of a
  plain crop; patches of an image only as large as the patch are crops."""
  ramp = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (256, 1, 3))
  plain = data.PatchSampler([ramp], 32, 64, seed=1).batch()
  shrunk = data.PatchSampler([ramp], 32, 64, seed=1,
                             random_downsample=True).batch()
  assert shrunk.shape == plain.shape and shrunk.dtype == np.uint8
  span = lambda batch: (batch[:, 16, -2, 0].astype(int) -
                        batch[:, 16, 1, 0].astype(int))
  assert np.all(np.abs(span(plain)) == 29)
  spans = np.abs(span(shrunk))
  assert spans.max() > 29 * 2 and spans.max() <= 29 * data.MAX_DOWNSAMPLE + 4
  np.testing.assert_array_equal(
      shrunk, data.PatchSampler([ramp], 32, 64, seed=1,
                                random_downsample=True).batch())
  small = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
  patches = data.PatchSampler([small], 32, 8, random_downsample=True).batch()
  assert all(np.array_equal(p, small) or np.array_equal(p[:, ::-1], small)
             for p in patches)
