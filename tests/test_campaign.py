"""Tests of balle/campaign.py: plan, leg records, anchor replacement."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from balle import campaign as campaign_lib
from balle.model import FactorizedPriorModel

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
