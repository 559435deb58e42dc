"""Tests of balle.coding.pixels."""

import numpy as np
import tensorflow as tf

from balle.coding import pixels


def test_replicate_edges_to_multiple():
  image = np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1)
  padded = pixels.replicate_edges_to_multiple(tf.constant(image), 4).numpy()
  assert padded.shape == (4, 4, 1)
  np.testing.assert_array_equal(padded[:2, :3], image)
  np.testing.assert_array_equal(padded[2:, :3, 0], [image[1, :, 0]] * 2)
  np.testing.assert_array_equal(padded[:, 3], padded[:, 2])
  same = pixels.replicate_edges_to_multiple(tf.zeros([16, 32, 3]), 16)
  assert same.shape == (16, 32, 3)
