"""Tests of balle.data.files: file lists, the validation hold-out, shards,
decoding."""

import numpy as np
import pytest

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
