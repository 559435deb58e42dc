"""Shared fixtures: a tiny frozen model, small generated images, a fake
finished training run."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from balle.model import FactorizedPriorModel, ModelConfig


def smooth_image(height, width, channels=3, seed=0):
  """A photo-like uint8 image: smooth gradients plus mild noise."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  planes = []
  for c in range(channels):
    phase = rng.uniform(0, 2 * np.pi)
    plane = (128 + 80 * np.sin(x / 9.0 + phase) * np.cos(y / 13.0 + c)
             + rng.normal(0, 6, (height, width)))
    planes.append(plane)
  return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
  """Folder of a frozen, untrained RGB model with 8 filters."""
  directory = str(tmp_path_factory.mktemp("tiny_model"))
  model = FactorizedPriorModel(ModelConfig(num_filters=8, lmbda=0.01,
                                           name="tiny"))
  model.freeze_for_coding()
  model.save(directory)
  return directory


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
  return FactorizedPriorModel.load(tiny_model_dir)


def fake_leg(leg_dir, model_dir, steps, losses):
  """A finished training run as a campaign leg or rung leaves it: final/ (a
  copy of the frozen model in `model_dir` + recipe.json) and the
  train/loss summaries {step: loss} in `leg_dir`."""
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


def results_document(bpp, psnr, image_set="set-a", codec=""):
  """A results document (balle.evaluation layout), one point per bpp."""
  return {"name": codec or "model", "codec": codec, "image_set": image_set,
          "results": {"bpp": list(bpp), "psnr-rgb": list(psnr),
                      "ms-ssim-rgb": [0.97] * len(bpp)}}
