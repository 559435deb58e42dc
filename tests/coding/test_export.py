"""The SavedModel works in a plain TensorFlow program without `balle`, for
both model families (bls2017: one section per tile, bmshj2018: two)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from balle.coding import codec
from balle.coding import file_format
from balle.coding.export import export_saved_model
from conftest import recheck, smooth_image

# Runs with `balle` made unimportable: only tensorflow and tfc are available.
# argv: the SavedModel, then the images to code; rejected.json names the
# files it must refuse and the messages, one of which it must give.
_PLAIN_CLIENT = """
import json, sys
sys.modules["balle"] = None
try:
  import balle
  raise SystemExit("balle is importable")
except ImportError:
  pass
import numpy as np
import tensorflow as tf, tensorflow_compression
codec = tf.saved_model.load(sys.argv[1])
for name in sys.argv[2:]:
  image = np.load(name + ".npy")
  data = codec.compress(tf.constant(image)).numpy()
  open(name + ".saved_model.balle", "wb").write(data)
  decoded = codec.decompress(tf.constant(data)).numpy()
  np.save(name + ".saved_model.npy", decoded)
  served = codec.signatures["decompress"](data=tf.constant(data))
  assert np.array_equal(list(served.values())[0].numpy(), decoded)
for name, messages in json.load(open("rejected.json")).items():
  try:
    codec.decompress(tf.constant(open(name, "rb").read()))
    raise SystemExit(name + " was decoded")
  except tf.errors.InvalidArgumentError as error:
    assert any(m in error.message for m in messages), (name, error.message)
try:
  codec.compress(tf.zeros([1025, 3, 3], tf.uint8))
  raise SystemExit("a two-tile image was coded")
except tf.errors.InvalidArgumentError as error:
  assert "single-tile" in error.message, error.message
print("ok")
"""

# Each family's tiny model (conftest) and the other family's.
_FAMILIES = {"tiny_model": "hyper_model", "hyper_model": "tiny_model"}


@pytest.fixture(scope="module", params=sorted(_FAMILIES))
def exported(request, tmp_path_factory):
  """(model, the other family's model, its SavedModel folder), exported
  once for the tests of this module."""
  model = request.getfixturevalue(request.param)
  other = request.getfixturevalue(_FAMILIES[request.param])
  directory = str(tmp_path_factory.mktemp("export") / model.ARCHITECTURE)
  export_saved_model(model, directory)
  return model, other, directory


def _with_entry_length(data, index, extra):
  """`data` with section `index`'s table entry claiming `extra` more bytes
  (the checksum recomputed)."""
  offset = (file_format.HEADER_SIZE + (index + 1) * file_format.ENTRY_SIZE -
            4)
  length = int.from_bytes(data[offset:offset + 4], "big") + extra
  return recheck(data[:offset] + length.to_bytes(4, "big") +
                 data[offset + 4:])


def _rejected_files(model, other, image):
  """{file name: (bytes, the messages one of which decompress must give)}
  of forged, damaged and foreign files for the SavedModel of `model`."""
  data = codec.compress_image(model, image)
  header, sections = file_format.unpack(data)
  damaged = bytearray(data)
  damaged[-file_format.CHECKSUM_SIZE - 1] ^= 4  # the last section's
  files = {
      "damaged.balle": (bytes(damaged), ["checksum"]),
      "foreign.balle": (codec.compress_image(other, image),
                        ["another architecture"]),
      "extra_section.balle": (file_format.pack(header, sections * 2),
                              ["section count"]),
      "claims_more.balle": (_with_entry_length(data, len(sections) - 1, 1),
                            ["announces more bytes"]),
  }
  for index, section in enumerate(sections):
    # A valid file but for section `index`, which is not a range code.
    forged = list(sections)
    forged[index] = file_format.Section(section.shape, section.data * 2)
    files[f"forged_{index}.balle"] = (
        file_format.pack(header, forged),
        [f"section {index} is not a range coding"])
  return files


def test_export_refuses_to_overwrite(exported):
  model, _, directory = exported
  with pytest.raises(FileExistsError):
    export_saved_model(model, directory)


def test_plain_tensorflow_client_is_bit_identical(exported, tmp_path):
  model, other, saved_model = exported
  images = {"rgb": smooth_image(37, 50), "gray": smooth_image(20, 17, 1),
            "dot": smooth_image(1, 1)}
  for name, image in images.items():
    np.save(tmp_path / f"{name}.npy", image)
  rejected = _rejected_files(model, other, images["rgb"])
  for name, (data, _) in rejected.items():
    (tmp_path / name).write_bytes(data)
  (tmp_path / "rejected.json").write_text(json.dumps(
      {name: messages for name, (_, messages) in rejected.items()}))
  result = subprocess.run(
      [sys.executable, "-c", _PLAIN_CLIENT, saved_model]
      + [str(tmp_path / name) for name in images],
      capture_output=True, text=True, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().endswith("ok")
  for name, image in images.items():
    data = (tmp_path / f"{name}.saved_model.balle").read_bytes()
    assert data == codec.compress_image(model, image)
    np.testing.assert_array_equal(
        np.load(tmp_path / f"{name}.saved_model.npy"),
        codec.decompress_image(data, model))
