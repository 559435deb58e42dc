"""Do files written here decode on other machines? Every shipped model x
every image, encoded once, decoded in fresh processes on each of
TensorFlow's kernel paths (balle.evaluation.portability.KERNEL_PATHS: oneDNN with 2
and 1 threads, oneDNN off, oneDNN limited to SSE4.1 and to AVX2).

    python benchmarks/portability.py --images=DIR [--models=A,B] [--float_indexes]

Prints per path and model family: the files that fail to decode (the
target is 0), the files whose decoded symbols differ from the reference
path's, and the largest pixel difference and the share of pixel values
that differ. --float_indexes encodes with each exact model's float-index
twin instead (how the hyperprior's files were written before issue 28), to
show what exactness fixes.
"""

import collections
import os
import tempfile

from absl import app
from absl import flags

from balle import pretrained
from balle.coding import codec
from balle.data import files
from balle.evaluation import portability
from balle.io import image_io

_IMAGES = flags.DEFINE_string(
    "images", None, "Images: a folder, glob or .txt list (balle.data.files).",
    required=True)
_MODELS = flags.DEFINE_list("models", None,
                            "Model names; default: every shipped model.")
_FLOAT_INDEXES = flags.DEFINE_bool(
    "float_indexes", False, "Encode with the float-index twins.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Work folder (default: a temporary one).")


def _encode(models, images, directory):
  """[{"file", "model"}] of every model x image, written into directory."""
  jobs = []
  for name in models:
    model = pretrained.resolve(name)
    if _FLOAT_INDEXES.value and model.float_index_model_id is not None:
      model = model.float_index_twin()
    for path in images:
      image = image_io.read_image(path)
      target = os.path.join(directory, f"{name}--{os.path.basename(path)}"
                            ".balle")
      with open(target, "wb") as f:
        f.write(codec.compress_image(model, image))
      jobs.append({"file": target, "model": name})
  return jobs


def run(work_dir):
  models = _MODELS.value or pretrained.list_models()
  images = files.image_files(_IMAGES.value)
  if not images:
    raise SystemExit(f"no images at {_IMAGES.value}")
  jobs = _encode(models, images, work_dir)
  print(f"{len(jobs)} files: {len(models)} models x {len(images)} images"
        f"{' (float indexes)' if _FLOAT_INDEXES.value else ''}\n")
  results = {
      path: portability.decode_under(path, jobs,
                                     os.path.join(work_dir, f"path{i}"))
      for i, path in enumerate(portability.KERNEL_PATHS)}
  reference = results[portability.REFERENCE_PATH]
  family = {job["file"]: pretrained.architecture_of(job["model"])
            for job in jobs}
  print("| kernel path | family | files | fail to decode | symbols differ "
        "| max pixel difference | pixel values that differ |")
  print("|---|---|---:|---:|---:|---:|---:|")
  for path, result in results.items():
    by_family = collections.defaultdict(dict)
    for name, value in result.items():
      by_family[family[name]][name] = value
    for architecture, values in sorted(by_family.items()):
      summary = portability.compare(reference, values)
      print(f"| {path} | {architecture} | {len(values)} | "
            f"{len(summary['failures'])} | "
            f"{len(summary['symbol_mismatches'])} | "
            f"{summary['max_pixel_difference']} | "
            f"{100 * summary['differing_pixels']:.4f} % |")
  failed = [(path, name, result[name]["error"])
            for path, result in results.items() for name in result
            if not result[name]["ok"]]
  for path, name, error in failed:
    print(f"FAILED on {path}: {os.path.basename(name)}: {error}")
  print(f"\ndecode failures in all: {len(failed)}")


def main(argv):
  del argv
  if _OUTPUT_DIR.value:
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    run(_OUTPUT_DIR.value)
  else:
    with tempfile.TemporaryDirectory() as work_dir:
      run(work_dir)


if __name__ == "__main__":
  app.run(main)
