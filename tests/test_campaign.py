"""Tests of balle/campaign.py: plan, leg records, anchor replacement."""

import json
import os
import shutil

import sys

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver

# experiments/ is not installed; import it from this checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from balle import campaign as campaign_lib
from balle import pretrained
from balle import rd_plot
from balle import reference_curves
from balle.model import FactorizedPriorModel, ModelConfig
from experiments import campaign as campaign_runner

PLAN_FLAGS = {"lmbda": 0.025, "num_filters": 8, "patchsize": 64,
              "batchsize": 2, "learning_rate": 1e-4}


def _fake_leg(leg_dir, model_dir, steps, losses):
  """A finished leg: final/ (a frozen model + recipe.json) and summaries."""
  final = os.path.join(leg_dir, "final")
  shutil.copytree(model_dir, final)
  recipe = {"steps": steps, "wall_time_s": 100.0, "validation_bpp": 0.5,
            "validation_psnr_db": 30.0}
  with open(os.path.join(final, "recipe.json"), "w") as f:
    json.dump(recipe, f)
  writer = tf.summary.create_file_writer(leg_dir)
  with writer.as_default():
    for step, loss in losses.items():
      tf.summary.scalar("train/loss", loss, step=step)
  writer.flush()
  return final


def test_legs_chain_through_the_float16_anchor(tmp_path, tiny_model_dir):
  directory = str(tmp_path / "campaign")
  campaign = campaign_lib.create(directory, PLAN_FLAGS, init_from="seed/",
                                 init_gpix=1.0, init_wall_time_s=60.0)
  with pytest.raises(FileExistsError):
    campaign_lib.create(directory, PLAN_FLAGS, init_from="seed/")
  flags = campaign.train_flags("work", ["train/"], max_time_s=3600)
  assert "--init_from=seed/" in flags and "--seed=1" in flags
  assert "--lmbda=0.025" in flags and "--model_dir=work/leg-1" in flags

  final = _fake_leg(str(tmp_path / "leg-1"), tiny_model_dir, steps=1000,
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
  with np.load(os.path.join(campaign.anchor_dir, "weights.npz")) as arrays:
    kernels = [arrays[n] for n in arrays.files if "kernel" in n]
  assert kernels and all(k.dtype == np.float16 for k in kernels)

  reloaded = campaign_lib.Campaign(directory)
  assert reloaded.next_leg == 2 and reloaded.legs[0] == record
  flags = reloaded.train_flags("work", ["train/"], max_time_s=3600)
  assert f"--init_from={reloaded.anchor_dir}" in flags
  assert "--seed=2" in flags
  table = reloaded.markdown_table()
  assert "kodak bpp" in table and "| 0.700 / 31.00 / 0.9700 |" in table
  assert not [n for n in os.listdir(directory) if n.startswith(".anchor")]


def test_missing_campaign_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="campaign.json"):
    campaign_lib.Campaign(str(tmp_path))


def test_training_loss_needs_summaries(tmp_path):
  with pytest.raises(ValueError, match="train/loss"):
    campaign_lib.final_training_loss(str(tmp_path))


def _results(bpp, psnr, image_set="set-a", codec=""):
  """A results document (balle.evaluation layout), one point per bpp."""
  return {"name": codec or "model", "codec": codec, "image_set": image_set,
          "results": {"bpp": list(bpp), "psnr-rgb": list(psnr),
                      "ms-ssim-rgb": [0.97] * len(bpp)}}


_J2K = _results([0.25, 1.0], [30.0, 34.0], codec="j2k")
_PUBLISHED = reference_curves.PublishedCurve(
    key="fake", family="balle2017", label="fake", citation="-", source="-",
    psnr_rgb=((0.25, 31.0), (1.0, 35.0)), ms_ssim_rgb=())


def test_figures_of_test_set_gaps_at_the_same_bpp():
  figures = campaign_lib.figures_of_test_set(
      _results([0.5], [31.0]), j2k=_J2K, published=_PUBLISHED)
  # 0.5 bpp is halfway in log(bpp) between 0.25 and 1.0.
  assert figures == {"bpp": 0.5, "psnr_db": 31.0, "ms_ssim": 0.97,
                     campaign_lib.GAP_J2K: pytest.approx(-1.0),
                     campaign_lib.GAP_PUBLISHED: pytest.approx(-2.0)}
  outside = campaign_lib.figures_of_test_set(_results([2.0], [40.0]),
                                             j2k=_J2K)
  assert outside[campaign_lib.GAP_J2K] is None
  assert campaign_lib.GAP_PUBLISHED not in outside
  with pytest.raises(ValueError, match="other images"):
    campaign_lib.figures_of_test_set(_results([0.5], [31.0], "set-b"),
                                     j2k=_J2K)
  assert campaign_lib.published_curve().family == "balle2017"


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
  kodak = dict(old["kodak"], **{campaign_lib.GAP_J2K: -1.5,
                                campaign_lib.GAP_PUBLISHED: -2.25})
  holdout = {"bpp": 0.8, "psnr_db": 30.0, "ms_ssim": 0.96,
             campaign_lib.GAP_J2K: None}
  campaign.legs = [_record(1, 6.0, old),  # recorded before the gaps existed
                   _record(2, 8.0, {"kodak": kodak, "holdout": holdout}),
                   _record(3, 10.0, {"kodak": dict(kodak, **{
                       campaign_lib.GAP_PUBLISHED: -1.0})})]
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
      document = _results([0.5], [31.0], image_set=values["images"])
      with open(os.path.join(values["output_dir"], "results.json"), "w") as f:
        json.dump(document, f)

  monkeypatch.setattr(campaign_runner, "_python_module", fake_python_module)
  work_dir = str(tmp_path / "work")
  with flagsaver.as_parsed(kodak="kodak/", holdout="holdout/",
                           work_dir=work_dir):
    figures = campaign_runner._measure("model/")
  assert [c[0] for c in commands] == ["experiments.baselines",
                                      "experiments.evaluate"] * 2
  assert commands[0][1] == ["--codecs=j2k", "--images=kodak/",
                            f"--output_dir={work_dir}/baselines-kodak"]
  assert commands[3][1][:2] == ["--models=model/", "--images=holdout/"]
  published = campaign_lib.published_curve()
  assert figures["kodak"][campaign_lib.GAP_PUBLISHED] == pytest.approx(
      31.0 - rd_plot.value_at_log_bpp(published.psnr_rgb, 0.5), abs=1e-3)
  assert figures["kodak"][campaign_lib.GAP_J2K] == pytest.approx(-1.0)
  assert figures["holdout"][campaign_lib.GAP_J2K] == pytest.approx(-1.0)
  assert campaign_lib.GAP_PUBLISHED not in figures["holdout"]


def test_runner_makes_path_flags_absolute():
  """The leg runs from its code snapshot, elsewhere than the project."""
  runner = campaign_runner
  assert runner._absolute_paths("--validation_glob=a/*.png,b.png") == (  # pylint: disable=protected-access
      f"--validation_glob={os.path.abspath('a/*.png')},"
      f"{os.path.abspath('b.png')}")
  assert runner._absolute_paths("--lmbda=0.025") == "--lmbda=0.025"  # pylint: disable=protected-access
  assert runner._absolute_paths("--init_from=") == "--init_from="  # pylint: disable=protected-access


def _tiny_rung_model(directory, lmbda, num_filters):
  """A frozen untrained model of the given lambda and N in `directory`."""
  model = FactorizedPriorModel(ModelConfig(num_filters=num_filters,
                                           lmbda=lmbda))
  model.freeze_for_coding()
  model.save(directory)
  return directory


def test_ladder_chains_from_the_anchor_and_ships(tmp_path, monkeypatch,
                                                 tiny_model_dir):
  ladder = (campaign_lib.Rung(1, 0.005, 8), campaign_lib.Rung(2, 0.01, 8),
            campaign_lib.Rung(3, 0.02, 12))
  monkeypatch.setattr(campaign_lib, "LADDER", ladder)
  monkeypatch.setattr(campaign_lib, "ANCHOR_QUALITY", 2)
  monkeypatch.setattr(campaign_lib, "LADDER_ORDER", (2, 1, 3))
  directory = str(tmp_path / "campaign")
  campaign = campaign_lib.create(directory, dict(PLAN_FLAGS, lmbda=0.01,
                                                 num_filters=8),
                                 init_from="seed/")
  with pytest.raises(ValueError, match="only the anchor's rung"):
    campaign.end_rung(2)  # no leg yet
  final = _fake_leg(str(tmp_path / "leg-1"),
                    _tiny_rung_model(str(tmp_path / "m2"), 0.01, 8),
                    steps=10, losses={10: 1.0})
  kodak = {"bpp": 0.5, "psnr_db": 32.0, "ms_ssim": 0.98}
  campaign.end_leg(final, [], 1.0, measure=lambda folder: {"kodak": kodak})
  assert campaign.next_rung().quality == 2
  with pytest.raises(ValueError, match="rung 2 is the anchor"):
    campaign.rung_train_flags(2, "work", ["train/"], steps=100)
  with pytest.raises(ValueError, match="starts from rung 2, which is not"):
    campaign.rung_train_flags(1, "work", ["train/"], steps=100)

  anchor_files = tmp_path / "anchor-files"
  shutil.copytree(campaign.anchor_dir, anchor_files)
  shutil.rmtree(campaign.anchor_dir)
  _tiny_rung_model(campaign.anchor_dir, 0.01, 8)  # not leg 1's model
  with pytest.raises(ValueError, match="is not the model leg 1 measured"):
    campaign.end_rung(2)
  shutil.rmtree(campaign.anchor_dir)
  shutil.copytree(anchor_files, campaign.anchor_dir)
  measured = []
  record = campaign.end_rung(2, measure=measured.append)
  assert not measured  # the anchor is the last leg's model: its figures
  assert record.parent == "anchor" and record.test_sets["kodak"] == kodak
  assert campaign.next_rung().quality == 1
  flags = campaign.rung_train_flags(1, "work", ["train/"], steps=100)
  assert f"--init_from={campaign.rung_dir(2)}" in flags
  assert "--lmbda=0.005" in flags and "--max_steps=100" in flags
  assert f"--model_dir={os.path.join('work', 'ladder', 'bls2017-mse-0.0050')}" \
      in flags

  wrong = _fake_leg(str(tmp_path / "wrong"),
                    _tiny_rung_model(str(tmp_path / "w"), 0.02, 8),
                    steps=100, losses={100: 1.0})
  with pytest.raises(ValueError, match="rung 1 is lambda 0.005"):
    campaign.end_rung(1, wrong)
  campaign.references["kodak"] = [[0.2, 28.0], [0.8, 33.0]]
  for quality, lmbda, filters, bpp, psnr in ((1, 0.005, 8, 0.25, 30.0),
                                             (3, 0.02, 12, 1.0, 35.0)):
    final = _fake_leg(str(tmp_path / f"rung-{quality}"),
                      _tiny_rung_model(str(tmp_path / f"r{quality}"), lmbda,
                                       filters),
                      steps=100, losses={100: 1.0})
    campaign.end_rung(quality, final, ["--batchsize=2", "--patchsize=50",
                                       "--init_from=/machine/a/b/c"],
                      measure=lambda folder, b=bpp,
                      p=psnr: {"kodak": {"bpp": b, "psnr_db": p,
                                         "ms_ssim": 0.97}})
  assert campaign.next_rung() is None
  reloaded = campaign_lib.Campaign(directory)
  assert [r.quality for r in reloaded.ladder] == [1, 2, 3]
  assert reloaded.ladder[2].parent == "bls2017-mse-0.0100"
  with np.load(os.path.join(reloaded.rung_dir(3), "weights.npz")) as arrays:
    assert all(arrays[n].dtype == np.float16
               for n in arrays.files if "kernel" in n)
  rates = reloaded.ladder_bd_rates()
  # Each point is 1-2 dB above JPEG 2000 and the published curve: the
  # curve codes the same quality with fewer bits.
  assert rates["kodak vs JPEG 2000"] < 0
  assert "kodak vs published Ballé 2017" in rates
  table = reloaded.ladder_table()
  in_all = reloaded.legs[0].cumulative_gpix + 100 * 2 * 50 ** 2 / 1e9
  assert reloaded.rung_training(3)[0] == pytest.approx(in_all)
  assert f"| 3 | 0.02 | 12 | bls2017-mse-0.0100 | 100 | 0.03 | {in_all:.1f} / " \
      in table
  assert "BD-rate (PSNR), kodak vs JPEG 2000" in table

  shipped = tmp_path / "shipped"
  shipped.mkdir()
  old = shipped / "bls2017-mse-0.0450"  # a shipped model that is no rung
  shutil.copytree(tiny_model_dir, old)
  monkeypatch.setattr(campaign_runner, "SOURCE_PRETRAINED", str(shipped))
  monkeypatch.setattr(pretrained, "_FOLDER", str(shipped))
  with flagsaver.as_parsed(campaign_dir=directory, replace_shipped="false"):
    campaign_runner._ship(reloaded)  # pylint: disable=protected-access
  assert old.exists()  # kept without --replace_shipped
  with flagsaver.as_parsed(campaign_dir=directory, replace_shipped="true"):
    campaign_runner._ship(reloaded)  # pylint: disable=protected-access
  assert not old.exists()
  assert pretrained.list_models() == [
      "bls2017-mse-0.0050", "bls2017-mse-0.0100", "bls2017-mse-0.0200"]
  info = pretrained.describe("bls2017-mse-0.0200")
  assert info["measured"]["kodak"]["psnr_db"] == 35.0
  assert "ladder rung 3" in info["measured"]["source"]
  rung_3 = shipped / "bls2017-mse-0.0200"
  for name in ("weights.npz", "config.json"):  # the measured bytes
    assert (rung_3 / name).read_bytes() == open(
        os.path.join(reloaded.rung_dir(3), name), "rb").read()
  recipe = json.loads((rung_3 / "recipe.json").read_text())
  assert recipe["parent"] == "bls2017-mse-0.0100" and recipe["steps"] == 100
  assert "--init_from=.../b/c" in recipe["flags"]  # no path of the machine
  reloaded.ladder[2].model_id = "0" * 16  # the files are not what was measured
  with pytest.raises(ValueError, match="not the model rung"):
    reloaded.ship(str(shipped))
