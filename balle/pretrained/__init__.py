"""Registry of the trained models shipped inside the package.

Each subfolder of this package is one model saved by
`CompressionModel.save` (config.json + weights.npz); its folder name is
the model's name. `DEFAULT_MODEL` is what the CLI uses without --model.
Models are added to the source tree by experiments/ship_model.py; the
installed package is only read.
"""

import functools
import json
import os

from balle.compression_model import CONFIG_FILE
from balle.compression_model import load_model

DEFAULT_MODEL = "bls2017-mse-0.0130"
_FOLDER = os.path.dirname(os.path.abspath(__file__))


def list_models():
  """Names of the shipped models, sorted (by lambda, as names embed it)."""
  return sorted(
      name for name in os.listdir(_FOLDER)
      if os.path.exists(os.path.join(_FOLDER, name, CONFIG_FILE)))


def model_directory(name):
  """Folder of the shipped model `name`."""
  if name not in list_models():
    available = ", ".join(list_models()) or "none"
    raise KeyError(f"no shipped model named {name!r} (available: {available})")
  return os.path.join(_FOLDER, name)


def resolve(name_or_directory=None):
  """Loads a model from a folder path, a shipped model name, or the default."""
  target = name_or_directory or DEFAULT_MODEL
  if os.path.isdir(target):
    return _load(os.path.abspath(target))
  return _load(model_directory(target))


@functools.lru_cache(maxsize=8)
def _load(directory):
  return load_model(directory)


def find_by_id(model_id):
  """Name of the shipped model whose id is `model_id` (bytes), or None."""
  for name in list_models():
    with open(os.path.join(_FOLDER, name, CONFIG_FILE)) as f:
      if json.load(f)["model_id"] == model_id.hex():
        return name
  return None
