import os

import pytest

from balle.campaign import diagnosis


def _files(counts):
  return [f"data/{source}/img_{i:03d}.png"
          for source, count in counts.items() for i in range(count)]


def test_yardstick_takes_a_floor_per_source_and_the_rest_in_proportion():
  files = _files({"big": 500, "bigger": 635, "urban": 60, "wiki": 40})
  chosen = diagnosis.choose_yardstick(files)
  per_source = {s: sum(f.startswith(f"data/{s}/") for f in chosen)
                for s in ("big", "bigger", "urban", "wiki")}
  assert per_source == {"big": 15, "bigger": 21, "urban": 6, "wiki": 6}
  assert chosen == sorted(chosen) and len(set(chosen)) == 48
  # Independent of listing order, and of other sources' contents.
  assert diagnosis.choose_yardstick(files[::-1]) == chosen
  small = _files({"a": 3, "b": 100})
  assert sum(f.startswith("data/a/") for f in
             diagnosis.choose_yardstick(small, size=10)) == 3
  with pytest.raises(ValueError, match="cannot spare"):
    diagnosis.choose_yardstick(_files({"a": 40}))


def test_yardstick_is_written_once(tmp_path):
  diagnosis.write_yardstick(str(tmp_path), ["a.png", "b.png"])
  assert diagnosis.read_yardstick(str(tmp_path)) == ["a.png", "b.png"]
  with pytest.raises(FileExistsError):
    diagnosis.write_yardstick(str(tmp_path), ["c.png"])
  with pytest.raises(FileNotFoundError, match="yardstick"):
    diagnosis.read_yardstick(str(tmp_path / "none"))


def test_db_at_equal_rate():
  # lambda * MSE = 1: a J lower by 0.01 is an MSE lower by 1 %, +0.0432 dB.
  assert diagnosis.db_at_equal_rate(1.99, 2.0, 0.025, 40.0) == pytest.approx(
      10 * 0.01 / 2.302585, rel=1e-6)
  assert diagnosis.db_at_equal_rate(2.0, 2.0, 0.025, 40.0) == 0


def _record(arm, seed, loss):
  return diagnosis.record(
      arm, seed, 100, 0.025, {"batchsize": 8, "patchsize": 256},
      {"wall_time_s": 60.0, "model_id": "ab"},
      {"images": 2, "bpp": 1.0, "mse_255": 40.0, "psnr_db": 32.0,
       "loss": loss})


def test_records_and_table(tmp_path):
  book = diagnosis.Diagnosis(str(tmp_path))
  book.add(_record("base", 1, 2.00))
  book.add(_record("base", 2, 2.02))
  book.add(_record("anneal", 1, 1.97))
  book.add(_record("anneal", 1, 1.96))  # replaces the first
  again = diagnosis.Diagnosis(str(tmp_path))
  assert len(again.records) == 3
  assert again.find("anneal", 1, 100, 0.025)["yardstick"]["loss"] == 1.96
  assert again.find("anneal", 2, 100, 0.025) is None
  table = again.markdown_table()
  assert "| 0.025 | anneal | 1 | 100 | 0.05 |" in table
  # anneal against the mean of base (2.01): -0.05 in J, +0.217 dB.
  assert "-0.0500 | +0.217 |" in table
  assert "seed spread 0.0200, 0.087 dB" in table
  assert os.path.exists(os.path.join(tmp_path, diagnosis.DIAGNOSIS_FILE))


def test_unknown_arm():
  with pytest.raises(ValueError, match="unknown arm"):
    diagnosis.arm("magic")
  assert diagnosis.arm("base").flags == {}
