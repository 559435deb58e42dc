"""Tests of balle/campaign/ladder.py: rungs chained from the anchor, shipped."""

import json
import os
import shutil
import sys
import types

import pytest
from absl.testing import flagsaver

# experiments/ is not installed; import it from this checkout.
from conftest import REPOSITORY  # pylint: disable=wrong-import-order
sys.path.insert(0, REPOSITORY)
# pylint: disable=wrong-import-position
from balle import campaign as campaign_lib
from balle import pretrained
from balle.campaign import ladder
from balle.models.bls2017 import FactorizedPriorModel, ModelConfig
from conftest import assert_stored_compactly, fake_leg, frozen_copy
from experiments import campaign as campaign_runner

PLAN_FLAGS = {"lmbda": 0.01, "num_filters": 8, "patchsize": 64,
              "batchsize": 2, "learning_rate": 1e-4}


def test_each_family_has_eight_rungs_of_its_own():
  for architecture, latent_channels in (("bls2017", 128), ("bmshj2018", 192)):
    rungs = ladder.ladder_of(architecture)
    assert [r.lmbda for r in rungs] == list(pretrained.QUALITY_LAMBDAS)
    assert {r.config.num_latent_channels for r in rungs} == {latent_channels}
  assert ladder.rung(8, "bmshj2018").name == "bmshj2018-mse-0.1800"
  with pytest.raises(ValueError, match="no ladder"):
    ladder.ladder_of("nonesuch")


@pytest.fixture(name="rung_model")
def fixture_rung_model(tmp_path, tiny_model_dir):
  """rung_model(directory, lmbda, N, name=""): a frozen untrained model of
  that lambda and N (N 8 or 12) in `directory`."""
  wide = FactorizedPriorModel(ModelConfig(num_filters=12, lmbda=0.01))
  wide.freeze_for_coding()
  wide.save(str(tmp_path / "n12"))
  sources = {8: tiny_model_dir, 12: str(tmp_path / "n12")}

  def make(directory, lmbda, num_filters, name=""):
    return frozen_copy(sources[num_filters], directory, lmbda=lmbda,
                       name=name)
  return make


def test_ladder_chains_from_the_anchor_and_ships(tmp_path, monkeypatch,
                                                 tiny_model_dir, rung_model):
  rungs = (ladder.Rung(1, 0.005, 8), ladder.Rung(2, 0.01, 8),
           ladder.Rung(3, 0.02, 12))
  monkeypatch.setattr(ladder, "LADDER", rungs)
  monkeypatch.setattr(ladder, "ANCHOR_QUALITY", 2)
  monkeypatch.setattr(ladder, "LADDER_ORDER", (2, 1, 3))
  directory = str(tmp_path / "campaign")
  campaign = campaign_lib.create(directory, PLAN_FLAGS, init_from="seed/")
  with pytest.raises(ValueError, match="only the anchor's rung"):
    campaign.end_rung(2)  # no leg yet
  final = fake_leg(str(tmp_path / "leg-1"),
                    rung_model(str(tmp_path / "m2"), 0.01, 8),
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
  rung_model(campaign.anchor_dir, 0.01, 8, "other")  # not leg 1's model
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
  assert "--learning_rate=0.0003" in flags  # RUNG_RECIPE over the plan
  campaign.plan["rung_flags"] = {"patchsize": 16, "learning_rate": 1e-4}
  flags = campaign.rung_train_flags(1, "work", ["train/"], steps=100)
  assert "--patchsize=16" in flags and "--learning_rate=0.0001" in flags
  assert "--lmbda=0.005" in flags  # the rung's own lambda wins
  del campaign.plan["rung_flags"]
  assert f"--model_dir={os.path.join('work', 'ladder', 'bls2017-mse-0.0050')}" \
      in flags

  wrong = fake_leg(str(tmp_path / "wrong"),
                    rung_model(str(tmp_path / "w"), 0.02, 8),
                    steps=100, losses={100: 1.0})
  with pytest.raises(ValueError, match="rung 1 is bls2017-mse-0.0050"):
    campaign.end_rung(1, wrong)
  campaign.references["kodak"] = [[0.2, 28.0], [0.8, 33.0]]
  for quality, lmbda, filters, bpp, psnr in ((1, 0.005, 8, 0.25, 30.0),
                                             (3, 0.02, 12, 1.0, 35.0)):
    final = fake_leg(str(tmp_path / f"rung-{quality}"),
                      rung_model(str(tmp_path / f"r{quality}"), lmbda,
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
  assert_stored_compactly(reloaded.rung_dir(3))
  rates = reloaded.ladder_bd_rates()
  # Each point is 1-2 dB above JPEG 2000 and the published curve: the
  # curve codes the same quality with fewer bits.
  assert rates["kodak vs JPEG 2000"] < 0
  assert "kodak vs published Ballé 2017" in rates
  # Like for like: only the published points whose models had N = 128.
  assert "kodak vs published Ballé 2017, its N = 128 points" in rates
  table = reloaded.ladder_table()
  in_all = reloaded.legs[0].cumulative_gpix + 100 * 2 * 50 ** 2 / 1e9
  assert reloaded.rung_training(3)[0] == pytest.approx(in_all)
  # Stored when made: it stands when the anchor's legs move on.
  assert reloaded.ladder[2].in_all_gpix == pytest.approx(in_all)
  reloaded.legs = []
  assert reloaded.rung_training(3)[0] == pytest.approx(in_all)
  assert f"| 3 | 0.02 | 12 / 12 | bls2017-mse-0.0100 | 100 | 0.03 | {in_all:.1f} / " \
      in table
  assert "BD-rate (PSNR), kodak vs JPEG 2000" in table

  shipped = tmp_path / "shipped"
  shipped.mkdir()
  old = shipped / "bls2017-mse-0.0450"  # a shipped model that is no rung
  shutil.copytree(tiny_model_dir, old)
  other_family = shipped / "bmshj2018-mse-0.0450"  # never removed
  shutil.copytree(tiny_model_dir, other_family)
  config = json.loads((other_family / "config.json").read_text())
  config["model"]["architecture"] = "bmshj2018"
  (other_family / "config.json").write_text(json.dumps(config))
  subset = tmp_path / "subset"
  subset.mkdir()
  assert reloaded.ship(str(subset), qualities=[1])[0] == [
      str(subset / "bls2017-mse-0.0050")]
  with pytest.raises(ValueError, match=r"rungs \[4\] are not made"):
    reloaded.ship(str(subset), qualities=[1, 4])
  monkeypatch.setattr(campaign_runner, "SOURCE_PRETRAINED", str(shipped))
  monkeypatch.setattr(pretrained, "_FOLDER", str(shipped))
  with flagsaver.as_parsed(campaign_dir=directory, replace_shipped="false",
                           qualities=""):
    campaign_runner._ship(reloaded)  # pylint: disable=protected-access
  assert old.exists()  # kept without --replace_shipped
  with flagsaver.as_parsed(campaign_dir=directory, replace_shipped="true",
                           qualities=""):
    campaign_runner._ship(reloaded)  # pylint: disable=protected-access
  assert not old.exists() and other_family.exists()
  assert pretrained.list_models() == [
      "bls2017-mse-0.0050", "bls2017-mse-0.0100", "bls2017-mse-0.0200",
      "bmshj2018-mse-0.0450"]
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


class _RecordedLadder(ladder.LadderMixin):
  """The records a ladder comparison reads: rungs 4-6 of `architecture`
  at `points` ((bpp, PSNR dB) per rung) and the anchor's leg."""

  def __init__(self, architecture, points, anchor_gpix):
    self.plan = {"train_flags": {"architecture": architecture}}
    self.ladder = [
        ladder.RungRecord(
            quality=quality, lmbda=0.01 * quality, num_filters=8,
            date="", parent="anchor" if quality == ladder.ANCHOR_QUALITY
            else "x", steps=0 if quality == ladder.ANCHOR_QUALITY else 200,
            wall_time_s=360.0, validation_bpp=bpp, validation_psnr_db=psnr,
            test_sets={"kodak": {"bpp": bpp, "psnr_db": psnr}},
            model_id=f"{architecture}-{quality}",
            flags=["--batchsize=8", "--patchsize=250"])
        for quality, (bpp, psnr) in zip((4, 5, 6), points)]
    self.legs = [types.SimpleNamespace(
        model_id=f"{architecture}-5", cumulative_gpix=anchor_gpix,
        cumulative_wall_time_s=7200.0)]


def test_ladder_comparison_gives_the_bd_rate_and_the_training():
  points = [(0.5, 30.0), (0.8, 32.0), (1.2, 34.0)]
  factorized = _RecordedLadder("bls2017", points, anchor_gpix=20.0)
  # The same qualities at 80 % of the bits: BD-rate -20 %.
  hyperprior = _RecordedLadder(
      "bmshj2018", [(0.8 * bpp, psnr) for bpp, psnr in points],
      anchor_gpix=2.0)
  lines = hyperprior.ladder_comparison(factorized)
  assert lines[0].startswith("- kodak: BD-rate (PSNR) of the bmshj2018 "
                             "ladder against the bls2017 ladder: -20.0 %")
  # Rungs 4 and 6 add 200 steps of 8x250^2 (0.1 Gpix, 0.1 h) to the anchor's.
  assert lines[1] == ("- bmshj2018 ladder (3 rungs), training in all per "
                      "rung: 2.0-2.1 Gpix, 2.00-2.10 wall h")
  assert "bls2017 ladder (3 rungs)" in lines[2]
  assert factorized.ladder_comparison(hyperprior)[0].endswith(
      "+25.0 % (100% of the PSNR range overlaps)")
