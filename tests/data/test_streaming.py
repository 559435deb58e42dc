"""Tests of the patches streamed from files (balle/data/streaming.py)."""

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from balle.data import streaming
from conftest import write_noise_image


def _write_flat(path, value, size=24):
  """An image of one gray level: every patch of it tells which file."""
  Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
  return str(path)


def _batches(stream, count, **kwargs):
  iterator = iter(stream.dataset(**kwargs))
  return [next(iterator).numpy() for _ in range(count)]


def test_batches_are_crops_or_mirrored_crops_of_the_files(tmp_path):
  files = [write_noise_image(tmp_path / f"{i}.png", 20 + 2 * i, 24, seed=i)
           for i in range(3)]
  stream = streaming.PatchStream(files, 16, 8, seed=1, patches_per_image=4,
                                 shuffle_patches=16)
  windows = []
  for path in files:
    image = np.asarray(Image.open(path))
    windows += [image[y:y + 16, x:x + 16]
                for y in range(image.shape[0] - 15)
                for x in range(image.shape[1] - 15)]
  flips = 0
  for batch in _batches(stream, 3):
    assert batch.shape == (8, 16, 16, 3) and batch.dtype == np.float32
    for patch in batch.astype(np.uint8):
      direct = any(np.array_equal(patch, w) for w in windows)
      mirrored = any(np.array_equal(patch[:, ::-1], w) for w in windows)
      assert direct or mirrored
      flips += mirrored and not direct
  assert 0 < flips < 24
  shrunk = streaming.PatchStream(files, 8, 4, random_downsample=True,
                                 shuffle_patches=8)
  batch = _batches(shrunk, 1)[0]
  assert batch.shape == (4, 8, 8, 3) and 0 <= batch.min() <= batch.max() <= 255


def test_stream_is_deterministic_given_the_seed(tmp_path):
  files = [write_noise_image(tmp_path / f"{i}.png", 24, 24, seed=i)
           for i in range(4)]

  def first(seed):
    return _batches(streaming.PatchStream(files, 8, 4, seed=seed,
                                          shuffle_patches=16), 2)

  np.testing.assert_array_equal(first((3, 100)), first((3, 100)))
  assert not np.array_equal(first((3, 100)), first((3, 101)))


def test_unusable_files_are_skipped_once_with_a_warning(tmp_path, caplog):
  good = _write_flat(tmp_path / "good.png", 200)
  truncated = tmp_path / "truncated.jpg"
  write_noise_image(truncated, 64, 64)
  truncated.write_bytes(truncated.read_bytes()[:300])
  small = _write_flat(tmp_path / "small.png", 50, size=6)
  stream = streaming.PatchStream([good, str(truncated), small], 8, 4,
                                 patches_per_image=2, shuffle_patches=4)
  batches = _batches(stream, 6)  # 6 epochs of the good file
  assert all(np.all(batch == 200) for batch in batches)
  assert stream.skipped == {str(truncated), small}
  for name in ("truncated.jpg", "small.png"):
    assert caplog.text.count(name) == 1, caplog.text
  broken = streaming.PatchStream([str(truncated)], 8, 4)
  with pytest.raises(tf.errors.OpError, match="none of the 1"):
    _batches(broken, 1)


def test_input_pipelines_read_disjoint_files(tmp_path):
  files = [_write_flat(tmp_path / f"{i}.png", 10 * i) for i in range(6)]
  stream = streaming.PatchStream(files, 8, 4, patches_per_image=2,
                                 shuffle_patches=4)
  seen = []
  for index in range(3):
    context = tf.distribute.InputContext(num_input_pipelines=3,
                                         input_pipeline_id=index,
                                         num_replicas_in_sync=2)
    batches = _batches(stream, 4, input_context=context)
    assert batches[0].shape == (2, 8, 8, 3)
    seen.append({int(v) for b in batches for v in np.unique(b)})
  assert seen == [{0, 30}, {10, 40}, {20, 50}]
