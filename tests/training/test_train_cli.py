"""`python -m experiments.train` end to end, and its flags (derived from
balle.training.config.TrainConfig) against the ones long runs are driven by."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from balle.models.bls2017 import FactorizedPriorModel, ModelConfig
from balle.training import config as train_config
from conftest import REPOSITORY
from conftest import smooth_image


# The flags (and defaults) of experiments.train before its flags were
# derived from TrainConfig; training campaigns are driven by them.
LEGACY_FLAG_DEFAULTS = {
    "lmbda": 0.013, "num_filters": 128, "gdn_form": "paper", "patchsize": 128,
    "batchsize": 8, "train_glob": None, "model_dir": None, "final_dir": "",
    "max_steps": 100_000, "max_time_s": 0.0, "learning_rate": 1e-3,
    "lr_warmup_steps": 200, "lr_schedule": "steps",
    "lr_boundaries": ["0.8"], "lr_values": ["0.0001"], "plateau_window": 1000,
    "plateau_patience": 3, "plateau_min_improvement": 0.005,
    "plateau_min_lr": 1e-6, "clip_norm": 0.0, "divergence_factor": 10.0,
    "max_rollbacks": 3, "precision": "auto", "init_from": "", "seed": 0,
    "log_every": 100, "checkpoint_every": 500, "validate_every": 2000,
    "num_validation": 6, "max_checkpoints": 3, "intra_op_threads": 0,
    "inter_op_threads": 0, "finalize_only": False,
}

_DUMP_FLAGS = """
import json
from absl import flags
import experiments.train
print(json.dumps({flag.name: flag.default for flag in
                  flags.FLAGS.get_key_flags_for_module(experiments.train)}))
"""


def _run(args, cwd):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=REPOSITORY + os.pathsep + os.environ.get(
                 "PYTHONPATH", ""))
  return subprocess.run([sys.executable] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, check=True)


def test_flags_are_the_settings_and_keep_their_legacy_meaning(tmp_path):
  defaults = json.loads(_run(["-c", _DUMP_FLAGS], tmp_path).stdout)
  for name, default in LEGACY_FLAG_DEFAULTS.items():
    assert defaults[name] == default, name
  settings = {name: default for name, default, _ in train_config.setting_fields()}
  assert set(defaults) == set(settings) | {
      "intra_op_threads", "inter_op_threads", "finalize_only"}
  for name, default in settings.items():
    if name in ("model_dir", "train_glob"):
      continue  # required: no default
    if isinstance(default, tuple):
      default = [str(v) for v in default]
    assert defaults[name] == default, name
  for name in ("channels", "divergence_patience", "ema_decay",
               "prior_lr_scale", "finetune_decoder_rounded"):
    assert name in defaults


def test_train_end_to_end_on_tiny_gray_images(tmp_path):
  """Warm start, grayscale training, resume and --finalize_only, as a
  campaign drives them; every flag long runs use appears here."""
  images = tmp_path / "images"
  images.mkdir()
  for i in range(4):
    Image.fromarray(smooth_image(40, 40, channels=1, seed=i)[..., 0]).save(
        images / f"im_{i}.png")
  source = FactorizedPriorModel(ModelConfig(channels=1, num_filters=4))
  source.freeze_for_coding()
  source.save(str(tmp_path / "source"))
  command = [
      "-m", "experiments.train", "--init_from=source", "--lmbda=0.02",
      "--num_filters=4", "--channels=1", "--patchsize=32", "--batchsize=2",
      "--learning_rate=1e-3", "--lr_schedule=constant",
      "--lr_warmup_steps=2", "--clip_norm=1.0", f"--train_glob={images}",
      "--model_dir=run", "--max_time_s=600", "--max_steps=4",
      "--validate_every=100", "--checkpoint_every=3", "--log_every=2",
      "--seed=1", "--num_validation=1", "--precision=float32",
      "--ema_decay=0.9", "--intra_op_threads=1", "--inter_op_threads=1"]
  log = _run(command, tmp_path).stderr
  assert "step 2 " in log and "final validation" in log
  final = FactorizedPriorModel.load(str(tmp_path / "run" / "final"))
  assert final.config == ModelConfig(lmbda=0.02, channels=1, num_filters=4)
  with open(tmp_path / "run" / "final" / "recipe.json") as f:
    recipe = json.load(f)
  assert recipe["steps"] == 4 and recipe["model_id"] == final.model_id.hex()
  assert recipe["flags"]["channels"] == 1
  assert recipe["flags"]["model_dir"] == "run"
  assert recipe["flags"]["init_from"] == "source"
  assert recipe["flags"]["train_glob"] == ["images"]
  assert str(tmp_path) not in json.dumps(recipe)
  assert not [f for f in os.listdir(tmp_path / "run" / "final")
              if f.endswith(".tmp")]
  # A finished run resumes into finalizing only; --finalize_only elsewhere.
  log = _run(command + ["--finalize_only", "--final_dir=again",
                        "--num_validation=0"], tmp_path).stderr
  assert "resumed from" in log and "step 4" in log
  again = FactorizedPriorModel.load(str(tmp_path / "again"))
  assert again.model_id == final.model_id
  image = smooth_image(24, 40, channels=1)
  decoded = again.decompress(again.compress(image), image.shape[:2],
                             1).numpy()
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
