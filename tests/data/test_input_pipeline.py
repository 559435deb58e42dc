"""Tests of the choice of input pipeline (balle/data/input_pipeline.py)."""

import logging

import pytest
import tensorflow as tf

from balle import data
from balle.data import input_pipeline
from balle.data import streaming
from conftest import write_noise_image


def test_headers_give_the_decoded_size_and_name_unreadable_files(tmp_path,
                                                                 caplog):
  gray = write_noise_image(tmp_path / "gray.png", 6, 5, mode="L")
  rgb = write_noise_image(tmp_path / "rgb.jpg", 7, 9)
  (tmp_path / "junk.png").write_bytes(b"not an image")
  files = [gray, rgb, str(tmp_path / "junk.png")]
  assert input_pipeline.read_headers(files, channels=3) == [
      (gray, 6, 5, 3), (rgb, 7, 9, 3)]
  assert "junk.png" in caplog.text
  assert [h[3] for h in input_pipeline.read_headers(files, None)] == [1, 3]
  assert [h[3] for h in input_pipeline.read_headers(files, 1)] == [1, 1]


def test_choice_follows_the_budget_unless_forced():
  gib = input_pipeline.GIB
  assert input_pipeline.choose_pipeline("auto", gib, 1.0)[0] == "memory"
  choice, why = input_pipeline.choose_pipeline("auto", gib + 1, 1.0)
  assert choice == "stream" and "--memory_budget_gib=1" in why
  assert input_pipeline.choose_pipeline("memory", 9 * gib, 1.0)[0] == "memory"
  assert input_pipeline.choose_pipeline("stream", 1, 1.0)[0] == "stream"
  with pytest.raises(ValueError):
    input_pipeline.choose_pipeline("disk", 1, 1.0)


@pytest.mark.parametrize("budget_gib, chosen", [
    (1.0, data.PatchSampler), (1e-6, streaming.PatchStream)])
def test_training_data_chooses_by_the_budget_and_skips_what_it_cannot_use(
    tmp_path, caplog, budget_gib, chosen):
  caplog.set_level(logging.INFO, logger="absl")
  for i in range(5):  # 30x30x3 = 2,700 bytes each; 1e-6 GiB = 1,074 bytes
    write_noise_image(tmp_path / f"img_{i}.png", 24 + 6 * (i % 2), 30, seed=i)
  (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
  patches, validation = input_pipeline.training_data(
      [str(tmp_path)], patchsize=28, batchsize=3, multiple=16,
      num_validation=1, memory_budget_gib=budget_gib)
  assert isinstance(patches, chosen)
  assert len(validation) == 1
  assert all(a.shape[0] % 16 == a.shape[1] % 16 == 0 for a in validation)
  assert "corrupt.png" in caplog.text
  assert ("streamed" if chosen is streaming.PatchStream
          else "into memory") in caplog.text
  assert "smaller than 28 px" in caplog.text
  batch = next(iter(patches.dataset()))
  assert batch.dtype == tf.float32 and batch.shape == (3, 28, 28, 3)
  assert 0 <= float(tf.reduce_min(batch)) and float(tf.reduce_max(batch)) <= 255


def test_training_data_needs_an_image_as_large_as_the_patch(tmp_path):
  write_noise_image(tmp_path / "small.png", 20, 20)
  with pytest.raises(ValueError, match="at least 28x28"):
    input_pipeline.training_data([str(tmp_path)], 28, 2, 16)
  with pytest.raises(FileNotFoundError):
    input_pipeline.training_data([str(tmp_path / "none")], 28, 2, 16)
