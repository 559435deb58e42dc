"""Files written here decode to the same symbols on TensorFlow's other
kernel paths (oneDNN off, oneDNN limited to SSE4.1 and AVX2, 1 and 2
threads), for every shipped model: balle.evaluation.portability, in subprocesses."""

import numpy as np
import pytest

from balle import pretrained
from balle.coding import codec
from balle.evaluation import portability
from conftest import smooth_image


@pytest.fixture(scope="module")
def written_files(tmp_path_factory):
  """[{"file", "model"}]: each shipped model's files of two images, one
  crossing a tile border, one gray."""
  directory = tmp_path_factory.mktemp("portability")
  images = {"rgb": (smooth_image(80, 150, seed=4), 64),
            "gray": (smooth_image(40, 56, channels=1, seed=5), 1024)}
  jobs = []
  for name in pretrained.list_models():
    model = pretrained.resolve(name)
    for kind, (image, tile_size) in images.items():
      path = directory / f"{name}-{kind}.balle"
      path.write_bytes(codec.compress_image(model, image,
                                            tile_size=tile_size))
      jobs.append({"file": str(path), "model": name})
  return directory, jobs


def test_every_shipped_model_decodes_the_same_symbols_on_every_kernel_path(
    written_files):
  directory, jobs = written_files
  results = {name: portability.decode_under(name, jobs,
                                            str(directory / f"path{i}"))
             for i, name in enumerate(portability.KERNEL_PATHS)}
  reference = results[portability.REFERENCE_PATH]
  for name, result in results.items():
    summary = portability.compare(reference, result)
    assert summary["failures"] == [], (name, summary)
    assert summary["symbol_mismatches"] == [], (name, summary)
    # g_s runs in floating point: pixels may move by a level, no more.
    assert summary["max_pixel_difference"] <= 1, (name, summary)


def test_compare_reports_failures_mismatches_and_pixel_differences(tmp_path):
  pixels = {}
  for name, values in (("a", [[1, 2], [3, 4]]), ("b", [[1, 2], [3, 6]])):
    pixels[name] = str(tmp_path / f"{name}.npy")
    np.save(pixels[name], np.array(values, np.uint8))
  reference = {"x": {"ok": True, "symbols": "s", "pixels": pixels["a"]},
               "y": {"ok": True, "symbols": "t", "pixels": pixels["a"]}}
  results = {"x": {"ok": True, "symbols": "s", "pixels": pixels["b"]},
             "y": {"ok": False, "symbols": "", "pixels": ""}}
  assert portability.compare(reference, results) == {
      "failures": ["y"], "symbol_mismatches": [],
      "max_pixel_difference": 2, "differing_pixels": 0.25}
  results["y"] = {"ok": True, "symbols": "u", "pixels": pixels["a"]}
  assert portability.compare(reference, results)["symbol_mismatches"] == ["y"]
