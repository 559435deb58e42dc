"""Export a trained model as a SavedModel usable with TensorFlow alone.

    python -m experiments.export --model=DIR_OR_NAME --output=DIR

The SavedModel has `compress(image uint8 [H, W, C]) -> file bytes` and
`decompress(data) -> uint8 image` functions and serving signatures; see
balle/coding/export.py.
"""

from absl import app
from absl import flags

from balle import pretrained
from balle.coding import export

_MODEL = flags.DEFINE_string(
    "model", None, "Model folder or shipped model name (default: the shipped "
    "default model).")
_OUTPUT = flags.DEFINE_string("output", None, "SavedModel folder to write.",
                              required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing --output folder.")


def main(argv):
  del argv
  model = pretrained.resolve(_MODEL.value)
  export.export_saved_model(model, _OUTPUT.value, overwrite=_OVERWRITE.value)
  print(f"wrote SavedModel of {model.config.name} to {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
