"""Tests of balle/campaign/legs.py and its runner: plan, leg records, anchor
replacement, the leg table and learning curve."""

import json
import os
import sys

import pytest
from absl.testing import flagsaver

# experiments/ is not installed; import it from this checkout.
from conftest import REPOSITORY  # pylint: disable=wrong-import-order
sys.path.insert(0, REPOSITORY)
# pylint: disable=wrong-import-position
from balle import campaign as campaign_lib
from balle.campaign import records as campaign_records
from balle.evaluation import rd_curves
from balle.models.bls2017 import FactorizedPriorModel
from conftest import assert_stored_compactly
from conftest import fake_leg
from conftest import results_document
from experiments import campaign as campaign_runner

PLAN_FLAGS = {"lmbda": 0.025, "num_filters": 8, "patchsize": 64,
              "batchsize": 2, "learning_rate": 1e-4}
GAP_BALLE2017 = "psnr_gap_balle2017_db"


def test_legs_chain_through_the_compact_anchor(tmp_path, tiny_model_dir):
  directory = str(tmp_path / "campaign")
  campaign = campaign_lib.create(directory, PLAN_FLAGS, init_from="seed/",
                                 init_gpix=1.0, init_wall_time_s=60.0)
  with pytest.raises(FileExistsError):
    campaign_lib.create(directory, PLAN_FLAGS, init_from="seed/")
  flags = campaign.train_flags("work", ["train/"], max_time_s=3600)
  assert "--init_from=seed/" in flags and "--seed=1" in flags
  assert "--lmbda=0.025" in flags and "--model_dir=work/leg-1" in flags

  final = fake_leg(str(tmp_path / "leg-1"), tiny_model_dir, steps=1000,
                    losses={500: 3.0, 1000: 2.0, 3000: 1.0, 4000: 1.5})
  measured = []
  record = campaign.end_leg(
      final, flags, campaign_lib.final_training_loss(str(tmp_path / "leg-1")),
      measure=lambda folder: measured.append(folder) or {
          "kodak": {"bpp": 0.7, "psnr_db": 31.0, "ms_ssim": 0.97}})
  # The mean of the windows logged within the last 2000 steps.
  assert record.train_loss == pytest.approx(1.25)
  assert record.gpix == pytest.approx(1000 * 2 * 64 ** 2 / 1e9, abs=1e-3)
  assert record.cumulative_gpix == pytest.approx(1.0 + record.gpix, abs=1e-3)
  assert record.cumulative_wall_time_s == pytest.approx(160.0)
  assert record.test_sets["kodak"]["psnr_db"] == 31.0
  assert measured and measured[0] != campaign.anchor_dir  # before the rename

  anchor = FactorizedPriorModel.load(campaign.anchor_dir)
  assert anchor.model_id.hex() == record.model_id
  assert_stored_compactly(campaign.anchor_dir)

  reloaded = campaign_lib.Campaign(directory)
  assert reloaded.next_leg == 2 and reloaded.legs[0] == record
  flags = reloaded.train_flags("work", ["train/"], max_time_s=3600)
  assert f"--init_from={reloaded.anchor_dir}" in flags
  assert "--seed=2" in flags
  table = reloaded.markdown_table()
  assert "kodak bpp" in table and "| 0.700 / 31.00 / 0.9700 |" in table
  assert not [n for n in os.listdir(directory) if n.startswith(".anchor")]


def test_first_leg_from_scratch_takes_its_own_flags(tmp_path,
                                                    tiny_model_dir):
  campaign = campaign_lib.create(
      str(tmp_path / "campaign"), dict(PLAN_FLAGS, architecture="bmshj2018"),
      init_from="", first_leg_flags={"learning_rate": 1e-3,
                                     "patchsize": 128})
  flags = campaign.train_flags("work", ["train/"], max_time_s=60)
  assert "--init_from=" in flags and "--learning_rate=0.001" in flags
  assert "--patchsize=128" in flags and "--patchsize=64" not in flags
  assert campaign.architecture == "bmshj2018"
  assert campaign.rung(5).name == "bmshj2018-mse-0.0250"
  final = fake_leg(str(tmp_path / "leg-1"), tiny_model_dir, steps=10,
                   losses={10: 1.0})
  record = campaign.end_leg(final, flags, 1.0)
  assert record.gpix == pytest.approx(10 * 2 * 128 ** 2 / 1e9, abs=1e-3)
  flags = campaign.train_flags("work", ["train/"], max_time_s=60)
  assert "--learning_rate=0.0001" in flags and "--patchsize=64" in flags
  assert f"--init_from={campaign.anchor_dir}" in flags


def test_missing_campaign_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="campaign.json"):
    campaign_lib.Campaign(str(tmp_path))


def test_training_loss_needs_summaries(tmp_path):
  with pytest.raises(ValueError, match="train/loss"):
    campaign_lib.final_training_loss(str(tmp_path))


_J2K = results_document([0.25, 1.0], [30.0, 34.0], codec="j2k")


def _record(leg, cumulative_gpix, test_sets):
  return campaign_lib.LegRecord(
      leg=leg, date="2026-11-23 20:00 UTC", steps=1000, gpix=2.0,
      cumulative_gpix=cumulative_gpix, wall_time_s=7200.0,
      cumulative_wall_time_s=7200.0 * leg, train_loss=1.0,
      validation_bpp=0.7, validation_psnr_db=32.0, test_sets=test_sets,
      model_id="00", flags=[])


def test_table_and_learning_curve_show_the_gaps(tmp_path):
  directory = str(tmp_path / "campaign")
  campaign = campaign_lib.create(directory, PLAN_FLAGS, init_from="seed/")
  with pytest.raises(ValueError, match="no leg"):
    campaign.plot_learning_curve(str(tmp_path / "empty.png"))
  old = {"kodak": {"bpp": 0.7, "psnr_db": 31.0, "ms_ssim": 0.97}}
  kodak = dict(old["kodak"], **{campaign_records.GAP_J2K: -1.5,
                                GAP_BALLE2017: -2.25})
  holdout = {"bpp": 0.8, "psnr_db": 30.0, "ms_ssim": 0.96,
             campaign_records.GAP_J2K: None}
  campaign.legs = [_record(1, 6.0, old),  # recorded before the gaps existed
                   _record(2, 8.0, {"kodak": kodak, "holdout": holdout}),
                   _record(3, 10.0, {"kodak": dict(kodak, **{
                       GAP_BALLE2017: -1.0})})]
  campaign.save()
  reloaded = campaign_lib.Campaign(directory)
  assert reloaded.legs == campaign.legs
  table = reloaded.markdown_table().splitlines()
  assert table[0].endswith(
      "| kodak bpp / PSNR dB / MS-SSIM | kodak PSNR gap to JPEG 2000 dB | "
      "kodak PSNR gap to Ballé 2017 dB | holdout bpp / PSNR dB / MS-SSIM | "
      "holdout PSNR gap to JPEG 2000 dB |")
  assert table[2].endswith("| 0.700 / 31.00 / 0.9700 | - | - | - | - |")
  assert table[3].endswith("| 0.700 / 31.00 / 0.9700 | -1.50 | -2.25 | "
                           "0.800 / 30.00 / 0.9600 | - |")
  assert table[4].endswith("| -1.50 | -1.00 | - | - |")
  # Ballé 2017: 1.25 dB over log2(10/8) doublings, 1 dB to go; 6 Gpix in
  # 6 wall hours. JPEG 2000: flat. Held-out: no gap recorded.
  published, j2k = reloaded.projection_lines()
  assert published.startswith("- Kodak - Ballé 2017 (published): -1.00 dB "
                              "at 10.0 Gpix; +3.883 dB per doubling")
  assert "legs 2, 3" in published
  assert published.endswith("0 dB at ~12 Gpix: 2 Gpix more, ~2 wall hours "
                            "at 1.00 Gpix/h")
  assert j2k.endswith("the gap does not close with compute")

  path = str(tmp_path / "curve.png")
  for _ in range(2):  # the second call replaces the first plot
    assert reloaded.plot_learning_curve(path) == path
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert sorted(os.listdir(tmp_path)) == ["campaign", "curve.png"]


def test_runner_measures_jpeg2000_on_the_same_images(tmp_path, monkeypatch):
  commands = []

  def fake_python_module(module, arguments, cwd=None):
    del cwd
    commands.append((module, list(arguments)))
    values = dict(a[2:].split("=", 1) for a in arguments)
    if module == "experiments.baselines":
      os.makedirs(values["output_dir"], exist_ok=True)
      document = dict(_J2K, image_set=values["images"])
      with open(os.path.join(values["output_dir"], "j2k.json"), "w") as f:
        json.dump(document, f)
    else:
      assert module == "experiments.evaluate"
      document = results_document([0.5], [31.0], image_set=values["images"])
      with open(os.path.join(values["output_dir"], "results.json"), "w") as f:
        json.dump(document, f)

  monkeypatch.setattr(campaign_runner, "_python_module", fake_python_module)
  work_dir = str(tmp_path / "work")
  campaign = campaign_lib.create(str(tmp_path / "campaign"), PLAN_FLAGS,
                                 init_from="seed/")
  with flagsaver.as_parsed(kodak="kodak/", holdout="holdout/",
                           work_dir=work_dir):
    figures = campaign_runner._measure("model/", campaign)
  assert [c[0] for c in commands] == ["experiments.baselines",
                                      "experiments.evaluate"] * 2
  assert commands[0][1] == ["--codecs=j2k", "--images=kodak/",
                            f"--output_dir={work_dir}/baselines-kodak"]
  assert commands[3][1][:2] == ["--models=model/", "--images=holdout/"]
  assert campaign.references["kodak"] == [[0.25, 30.0], [1.0, 34.0]]
  published = campaign_records.published_curve()
  assert figures["kodak"][GAP_BALLE2017] == pytest.approx(
      31.0 - rd_curves.value_at_log_bpp(published.psnr_rgb, 0.5), abs=1e-3)
  assert figures["kodak"][campaign_records.GAP_J2K] == pytest.approx(-1.0)
  assert figures["holdout"][campaign_records.GAP_J2K] == pytest.approx(-1.0)
  assert GAP_BALLE2017 not in figures["holdout"]


def test_runner_makes_path_flags_absolute():
  """The leg runs from its code snapshot, elsewhere than the project."""
  runner = campaign_runner
  assert runner._absolute_paths("--validation_glob=a/*.png,b.png") == (  # pylint: disable=protected-access
      f"--validation_glob={os.path.abspath('a/*.png')},"
      f"{os.path.abspath('b.png')}")
  assert runner._absolute_paths("--lmbda=0.025") == "--lmbda=0.025"  # pylint: disable=protected-access
  assert runner._absolute_paths("--init_from=") == "--init_from="  # pylint: disable=protected-access


