"""Tests of image files into arrays and patches in memory (balle/data.py)."""

import numpy as np
import pytest
import tensorflow as tf

from balle import data
from conftest import write_noise_image


def test_expand_patterns_folders_globs_and_commas(tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  png = write_noise_image(tmp_path / "a" / "x.png", 8, 8)
  jpg = write_noise_image(tmp_path / "b" / "y.jpg", 8, 8)
  (tmp_path / "a" / "notes.txt").write_text("not an image")
  assert data.expand_patterns(str(tmp_path / "a")) == [png]
  assert data.expand_patterns(
      [f"{tmp_path}/a/*.png,{tmp_path}/b/*.jpg"]) == [png, jpg]
  assert data.expand_patterns([str(tmp_path / "a"), str(tmp_path / "b"),
                               str(tmp_path / "a")]) == [png, jpg]


def test_image_files_reads_a_list_or_patterns(tmp_path):
  png = write_noise_image(tmp_path / "x.png", 8, 8)
  jpg = write_noise_image(tmp_path / "y.jpg", 8, 8)
  listing = tmp_path / "list.txt"
  listing.write_text(f"{jpg}\n\n{png}\n")
  assert data.image_files(str(listing)) == [jpg, png]  # listed order
  assert data.image_files(str(tmp_path)) == [png, jpg]


def test_validation_split_depends_only_on_names():
  files = [f"/d{i % 3}/img_{i}.png" for i in range(20)]
  train, held_out = data.split_validation(files, 3)
  assert len(held_out) == 3 and len(train) == 17
  assert not set(train) & set(held_out)
  _, held_out_reversed = data.split_validation(files[::-1], 3)
  assert set(held_out_reversed) == set(held_out)
  _, held_out_more = data.split_validation(files + ["/x/new.png"], 4)
  assert set(held_out) <= set(held_out_more)
  with pytest.raises(ValueError):
    data.split_validation(files, 20)


def test_pinned_validation_images_leave_training(tmp_path):
  (tmp_path / "train").mkdir()
  files = [write_noise_image(tmp_path / "train" / f"{i}.png", 8, 8)
           for i in range(4)]
  pinned = f"{files[1]},{files[3]}"
  train, held_out = data.split_validation(files, 2, [pinned])
  assert held_out == [files[1], files[3]] and train == [files[0], files[2]]
  more = files + [write_noise_image(tmp_path / "extra.png", 8, 8)]
  assert data.split_validation(more, 2, [pinned])[1] == held_out
  with pytest.raises(FileNotFoundError, match="validation"):
    data.split_validation(files, 2, [str(tmp_path / "none*.png")])


def test_expand_patterns_takes_every_image_suffix(tmp_path):
  names = ["a.png", "b.JPG", "c.jpeg", "d.bmp", "e.tif", "f.tiff", "g.webp",
           "h.gif", "i.txt"]
  for name in names:
    (tmp_path / name).write_bytes(b"")
  found = [p.rsplit("/", 1)[1] for p in data.expand_patterns(str(tmp_path))]
  assert found == names[:7]


def test_load_images_channels(tmp_path):
  files = [write_noise_image(tmp_path / "gray.png", 6, 5, mode="L"),
           write_noise_image(tmp_path / "rgb.png", 6, 5)]
  for channels, shapes in ((3, [(6, 5, 3)] * 2), (1, [(6, 5, 1)] * 2),
                           (None, [(6, 5, 1), (6, 5, 3)])):
    images, _ = data.load_images(files, channels=channels)
    assert [a.shape for a in images] == shapes


def test_small_images_are_skipped_and_counted(tmp_path):
  files = [write_noise_image(tmp_path / "big.png", 40, 50),
           write_noise_image(tmp_path / "narrow.png", 40, 20),
           write_noise_image(tmp_path / "gray.png", 33, 32, mode="L")]
  images, num_skipped = data.load_images(files, min_size=32)
  assert num_skipped == 1
  assert [a.shape for a in images] == [(40, 50, 3), (33, 32, 3)]
  assert all(a.dtype == np.uint8 for a in images)


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


def test_unreadable_files_raise_or_are_skipped_with_a_warning(tmp_path,
                                                              caplog):
  good = write_noise_image(tmp_path / "good.png", 20, 20)
  broken = tmp_path / "broken.png"
  broken.write_bytes(open(good, "rb").read()[:60])
  with pytest.raises(ValueError, match="broken.png"):
    data.load_images([good, str(broken)])
  images, num_skipped = data.load_images([good, str(broken)],
                                         skip_unreadable=True)
  assert len(images) == 1 and num_skipped == 1
  assert "broken.png" in caplog.text


def test_shards_are_disjoint_and_cover_the_files():
  files = [f"{i}.png" for i in range(10)]
  shards = [data.shard_files(files, 3, i) for i in range(3)]
  assert sorted(sum(shards, [])) == sorted(files)
  assert not set(shards[0]) & set(shards[1])
  with pytest.raises(ValueError):
    data.shard_files(files, 3, 3)
  with pytest.raises(ValueError, match="none"):
    data.shard_files(files[:2], 3, 2)


def test_crop_to_multiple():
  image = np.zeros((33, 50, 3), np.uint8)
  assert data.crop_to_multiple(image, 16).shape == (32, 48, 3)
  assert data.crop_to_multiple(image, 10).shape == (30, 50, 3)


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
