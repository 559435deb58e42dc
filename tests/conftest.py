"""Shared fixtures: a tiny frozen model and small generated images."""

import numpy as np
import pytest

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
