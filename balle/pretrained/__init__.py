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

from balle.models.compression_model import CONFIG_FILE
from balle.models.compression_model import load_model

DEFAULT_MODEL = "bls2017-mse-0.0130"
# The family `balle compress --quality=Q` uses without --family: the
# factorized prior, the only family shipped and measured at eight rates.
DEFAULT_FAMILY = "bls2017"
_FOLDER = os.path.dirname(os.path.abspath(__file__))

# `balle compress --quality=Q` picks the shipped model trained at lambda
# QUALITY_LAMBDAS[Q - 1]: the eight rates of the ladder (balle.campaign).
QUALITY_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932,
                   0.18)
# A shipped model's measured figures, written when it is shipped:
# {test set: {"bpp", "psnr_db", "ms_ssim"}, "command": how they were made}.
MEASURED_FILE = "measured.json"


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


def _config_document(directory):
  """The config.json of the model in `directory`, as a dict."""
  with open(os.path.join(directory, CONFIG_FILE)) as f:
    return json.load(f)


def find_by_id(model_id):
  """Name of the shipped model whose id is `model_id` (bytes), or None; a
  model made exact since also owns the files of its float-index id."""
  for name in list_models():
    document = _config_document(os.path.join(_FOLDER, name))
    if model_id.hex() in (document["model_id"],
                          document.get("float_index_model_id")):
      return name
  return None


def indexes_of(model_id):
  """How the shipped model that wrote files of `model_id` chose their CDFs:
  "exact" (integer tables and networks), "float" (rounded from float h_s:
  a hyperprior file written before its model was made exact), or None for
  an id of no shipped model."""
  for name in list_models():
    document = _config_document(os.path.join(_FOLDER, name))
    if model_id.hex() == document.get("float_index_model_id"):
      return "float"
    if model_id.hex() == document["model_id"]:
      architecture = document["model"].get("architecture", DEFAULT_FAMILY)
      exact = ("float_index_model_id" in document or
               architecture == DEFAULT_FAMILY)
      return "exact" if exact else "float"
  return None


def quality_of_lambda(lmbda):
  """The quality (1..8) trained at `lmbda`, or None."""
  for quality, ladder_lambda in enumerate(QUALITY_LAMBDAS, start=1):
    if abs(lmbda - ladder_lambda) <= 1e-9 * ladder_lambda:
      return quality
  return None


def architecture_of(name_or_directory):
  """The architecture (model family) of a model folder or shipped name, from
  its config.json (no TensorFlow, no weights)."""
  directory = (name_or_directory if os.path.isdir(name_or_directory)
               else model_directory(name_or_directory))
  return _config_document(directory)["model"].get("architecture",
                                                  DEFAULT_FAMILY)


def describe(name):
  """{"name", "architecture", "lmbda", "num_filters", "latent_channels",
  "quality", "measured"} of a shipped model, from its files (no
  TensorFlow); latent_channels is M (N where the config stores 0);
  "measured" is {} without figures."""
  directory = model_directory(name)
  config = _config_document(directory)["model"]
  measured = {}
  if os.path.exists(os.path.join(directory, MEASURED_FILE)):
    with open(os.path.join(directory, MEASURED_FILE)) as f:
      measured = json.load(f)
  return {"name": name,
          "architecture": config.get("architecture", DEFAULT_FAMILY),
          "lmbda": config["lmbda"], "num_filters": config["num_filters"],
          "latent_channels": (config.get("latent_channels", 0)
                              or config["num_filters"]),
          "quality": quality_of_lambda(config["lmbda"]), "measured": measured}


def format_figures(figures):
  """"bpp / PSNR dB / MS-SSIM" of one measured test set, as tables show it."""
  return (f"{figures['bpp']:.3f} / {figures['psnr_db']:.2f} / "
          f"{figures['ms_ssim']:.4f}")


def model_for_quality(quality, family=DEFAULT_FAMILY):
  """Name of the shipped model of `family` (an architecture) and `quality`
  (QUALITY_LAMBDAS)."""
  shipped = {}
  for name in list_models():
    info = describe(name)
    if info["architecture"] == family:
      shipped[info["quality"]] = name
  if quality not in shipped:
    available = ", ".join(str(q) for q in sorted(
        q for q in shipped if q is not None)) or "none"
    raise KeyError(f"no shipped {family} model of quality {quality} (lambda "
                   f"{QUALITY_LAMBDAS[quality - 1]:g}); shipped {family} "
                   f"qualities: {available}"
                   if 1 <= quality <= len(QUALITY_LAMBDAS)
                   else f"quality must be 1..{len(QUALITY_LAMBDAS)}, got "
                   f"{quality}")
  return shipped[quality]
