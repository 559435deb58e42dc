"""The SavedModel works in a plain TensorFlow program without `balle`."""

import subprocess
import sys

import numpy as np
import pytest

from balle import codec, file_format
from balle.export import export_saved_model
from conftest import smooth_image

# Runs with `balle` made unimportable: only tensorflow and tfc are available.
_PLAIN_CLIENT = """
import sys
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
  served = tf.saved_model.load(sys.argv[1]).signatures["decompress"](
      data=tf.constant(data))
  assert np.array_equal(list(served.values())[0].numpy(), decoded)
damaged = bytearray(data)
damaged[len(damaged) // 2] ^= 4
try:
  codec.decompress(tf.constant(bytes(damaged)))
  raise SystemExit("damaged file was decoded")
except tf.errors.InvalidArgumentError as error:
  assert "checksum" in error.message, error.message
# Forged by the test: a valid file's payload replaced, checksum recomputed.
try:
  codec.decompress(tf.constant(open("forged.balle", "rb").read()))
  raise SystemExit("forged file was decoded")
except tf.errors.InvalidArgumentError as error:
  assert ("not a range coding" in error.message  # re-encoding differs
          or "Sanity check" in error.message), error.message  # tfc's check
try:
  codec.compress(tf.zeros([1025, 3, 3], tf.uint8))
  raise SystemExit("a two-tile image was coded")
except tf.errors.InvalidArgumentError as error:
  assert "single-tile" in error.message, error.message
print("ok")
"""


def test_plain_tensorflow_client_is_bit_identical(tiny_model, tmp_path):
  saved_model = str(tmp_path / "saved_model")
  export_saved_model(tiny_model, saved_model)
  with pytest.raises(FileExistsError):
    export_saved_model(tiny_model, saved_model)
  images = {"rgb": smooth_image(37, 50), "gray": smooth_image(20, 17, 1),
            "dot": smooth_image(1, 1)}
  for name, image in images.items():
    np.save(tmp_path / f"{name}.npy", image)
  header, (section,) = file_format.unpack(
      codec.compress_image(tiny_model, images["rgb"]))
  (tmp_path / "forged.balle").write_bytes(file_format.pack(
      header, [file_format.Section(section.shape, section.data * 2)]))
  result = subprocess.run(
      [sys.executable, "-c", _PLAIN_CLIENT, saved_model]
      + [str(tmp_path / name) for name in images],
      capture_output=True, text=True, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().endswith("ok")
  for name, image in images.items():
    data = (tmp_path / f"{name}.saved_model.balle").read_bytes()
    assert data == codec.compress_image(tiny_model, image)
    np.testing.assert_array_equal(
        np.load(tmp_path / f"{name}.saved_model.npy"),
        codec.decompress_image(data, tiny_model))
