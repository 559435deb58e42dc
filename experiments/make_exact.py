"""Makes saved scale-hyperprior models' decoding exact, in place: adds
exact.npz (the integer h_s and index thresholds, balle.models.integer_network) and
the new model id to config.json; weights.npz is left as it is. Files the
model wrote before keep decoding (with its float-index twin).

    python -m experiments.make_exact --in_place balle/pretrained/bmshj2018-mse-0.0250 ...

Prints each model's old and new id. A model that already has exact tables
is left alone.
"""

import hashlib
import os

from absl import app
from absl import flags

from balle.models.compression_model import EXACT_FILE
from balle.models.compression_model import WEIGHTS_FILE
from balle.models.compression_model import load_model

_IN_PLACE = flags.DEFINE_bool(
    "in_place", False, "Required: the model folders are rewritten (their "
    "config.json, and exact.npz added).")


def _digest(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def make_exact(directory):
  """Converts the model saved in `directory`; returns (old id, new id)."""
  if os.path.exists(os.path.join(directory, EXACT_FILE)):
    model = load_model(directory)
    return model.float_index_model_id.hex(), model.model_id.hex()
  model = load_model(directory)
  if not hasattr(model, "make_exact"):
    raise ValueError(f"{directory}: a {model.ARCHITECTURE} model has no "
                     "float decoding choices to make exact")
  weights_before = _digest(os.path.join(directory, WEIGHTS_FILE))
  old_id = model.model_id
  model.make_exact()
  model.update_model_ids()
  model.save(directory, overwrite=True)
  if _digest(os.path.join(directory, WEIGHTS_FILE)) != weights_before:
    raise RuntimeError(f"{directory}: weights.npz changed on saving")
  if load_model(directory).model_id != model.model_id:
    raise RuntimeError(f"{directory}: the saved model does not load back")
  return old_id.hex(), model.model_id.hex()


def main(argv):
  if not _IN_PLACE.value:
    raise app.UsageError("pass --in_place: the model folders are rewritten")
  if len(argv) < 2:
    raise app.UsageError("name one or more model folders")
  for directory in argv[1:]:
    old_id, new_id = make_exact(directory)
    print(f"{directory}: {old_id} (float indexes, still decoded) -> "
          f"{new_id} (exact)")


if __name__ == "__main__":
  app.run(main)
