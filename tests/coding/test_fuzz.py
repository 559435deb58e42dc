"""A short bounded run of the decoder fuzzer (benchmarks/fuzz_decoder.py;
run it there with --cases=500 for the long run)."""

import importlib.util
import pathlib

from conftest import REPOSITORY

_PATH = pathlib.Path(REPOSITORY) / "benchmarks" / "fuzz_decoder.py"
# Per case: a hang guard (the slowest case takes ~3 s on an idle machine),
# with room for a machine busy with other work.
TIME_LIMIT_S = 60


def _fuzzer():
  spec = importlib.util.spec_from_file_location("fuzz_decoder", _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_mutated_files_and_hostile_images_end_cleanly():
  summary = _fuzzer().fuzz(cases=16, seed=12, time_limit_s=TIME_LIMIT_S,
                           memory_limit_gib=4, log=lambda _: None)
  assert summary["failures"] == []
  assert summary["cases"] == 16 + summary["hostile_images"]
  outcomes = " ".join(summary["counts"])
  assert "huge_claim rejected" in outcomes
  assert "image:bomb_60000x60000.png rejected" in outcomes


def test_mutated_hyperprior_files_end_cleanly():
  """The same for files of two sections per tile (bmshj2018), the section
  table reordered among the mutations."""
  summary = _fuzzer().fuzz(cases=18, seed=3, time_limit_s=TIME_LIMIT_S,
                           memory_limit_gib=4, log=lambda _: None,
                           architecture="bmshj2018")
  assert summary["failures"] == []
  outcomes = " ".join(summary["counts"])
  assert "section_table rejected" in outcomes
  assert "huge_claim rejected" in outcomes
