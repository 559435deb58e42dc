"""Shared fixtures: tiny frozen models of both families, small generated
images, a fake finished training run."""

import dataclasses
import json
import math
import os
import pathlib
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

# The tests' root (conftest.py's folder; the suite mirrors balle/'s
# subpackages below it), the repository, and the committed test files.
TESTS = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(TESTS)
FIXTURES = pathlib.Path(TESTS) / "fixtures"

# Under pytest-xdist (-n K), each of the K worker processes gets its share of
# the cores for TensorFlow's thread pools instead of all of them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
  _THREADS = max(1, (os.cpu_count() or 1) // _WORKERS)
  tf.config.threading.set_intra_op_parallelism_threads(_THREADS)
  tf.config.threading.set_inter_op_parallelism_threads(_THREADS)

# pylint: disable=wrong-import-position
from balle.coding import file_format
from balle.models.bls2017 import FactorizedPriorModel, ModelConfig
from balle.models.bmshj2018 import ScaleHyperpriorModel
from balle.models.compression_model import load_model


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


def log_curve(rates, factor=1.0):
  """PSNR = 30 + 10 log2(bpp / factor): `factor` times the anchor's rate."""
  return tuple((r, 30 + 10 * math.log2(r / factor)) for r in rates)


def rate_estimates(model, image, steps=200):
  """Trains `model` briefly on `image` (Adam 3e-3), then freezes it;
  returns (noisy training bpp, ideal code length of the rounded latents in
  bpp, bpp of the range-coded sections)."""
  images = tf.constant(image[None].astype(np.float32))
  optimizer = tf.keras.optimizers.Adam(3e-3)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      _, _, loss = model.rate_distortion(images, training=True)
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

  for _ in range(steps):
    step()
  noisy_bpp = np.mean([float(model.rate_distortion(images)[0])
                       for _ in range(10)])
  ideal_bpp = float(model.rate_distortion(images, training=False)[0])
  model.freeze_for_coding()
  sections = model.compress(tf.constant(image))
  coded_bytes = sum(len(data.numpy()) for data, _ in sections)
  return noisy_bpp, ideal_bpp, 8 * coded_bytes / image.shape[0] / image.shape[1]


def write_noise_image(path, height, width, seed=0, mode="RGB"):
  """Writes a uint8 image of uniform noise, RGB or gray ("L"), to `path`
  (format by suffix); returns the path as a string."""
  rng = np.random.default_rng(seed)
  shape = (height, width, 3) if mode == "RGB" else (height, width)
  Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
  return str(path)


def recheck(data):
  """File bytes `data` with their checksum recomputed: what a forger does."""
  return file_format.with_checksum(data[:-4])


def _frozen_model_dir(tmp_path_factory, name, model):
  """A new folder `name` holding `model`, frozen for coding."""
  directory = str(tmp_path_factory.mktemp(name))
  model.freeze_for_coding()
  model.save(directory)
  return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
  """Folder of a frozen, untrained RGB model with 8 filters."""
  return _frozen_model_dir(tmp_path_factory, "tiny_model", FactorizedPriorModel(
      ModelConfig(num_filters=8, lmbda=0.01, name="tiny")))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
  return FactorizedPriorModel.load(tiny_model_dir)


def frozen_copy(source_dir, directory, **changes):
  """The frozen model in `source_dir` saved to `directory` with its config
  changed by `changes` (e.g. lmbda, name): the same weights and coding
  tables under a new model id, as if trained so, without the seconds
  freeze_for_coding takes. Returns `directory`."""
  model = load_model(source_dir)
  model.config = dataclasses.replace(model.config, **changes)
  model.update_model_ids()
  model.save(directory)
  return directory


def tiny_hyperprior_config(**kwargs):
  """A small bmshj2018 configuration: N = 8, M = 12."""
  return ModelConfig(**{"architecture": "bmshj2018", "num_filters": 8,
                        "latent_channels": 12, "lmbda": 0.01, **kwargs})


@pytest.fixture(scope="session")
def hyper_model_dir(tmp_path_factory):
  """Folder of a frozen, untrained bmshj2018 model, N = 8, M = 12."""
  tf.random.set_seed(1)
  return _frozen_model_dir(tmp_path_factory, "tiny_hyperprior",
                           ScaleHyperpriorModel(
                               tiny_hyperprior_config(name="tiny-hyper")))


@pytest.fixture(scope="session")
def hyper_model(hyper_model_dir):
  return ScaleHyperpriorModel.load(hyper_model_dir)


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


def assert_stored_compactly(directory):
  """The model in `directory` is a `compact_copy`: kernels int8 with float16
  scales, those touching the pixels float16 (balle.models.weight_storage)."""
  with np.load(os.path.join(directory, "weights.npz")) as arrays:
    kinds = {n: arrays[n].dtype for n in arrays.files if "kernel" in n}
  assert {np.dtype(np.int8), np.dtype(np.float16)} == set(kinds.values())
  assert all(kinds[n] == np.float16 for n in kinds if n.endswith("@scale"))
