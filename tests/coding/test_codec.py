import dataclasses
import hashlib
import struct
import threading
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from balle import pretrained
from balle.coding import codec
from balle.coding import file_format
from balle.coding.file_format import FormatError
from balle.models.bls2017 import FactorizedPriorModel, ModelConfig
from conftest import FIXTURES
from conftest import smooth_image


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 33, 3), (64, 48, 3),
                                   (5, 200, 3), (31, 19, 1)])
def test_round_trip_any_size(tiny_model, shape):
  image = smooth_image(*shape)
  data = codec.compress_image(tiny_model, image)
  header, _ = file_format.unpack(data)
  assert (header.height, header.width, header.channels) == shape
  decoded = codec.decompress_image(data, tiny_model)
  assert decoded.shape == shape and decoded.dtype == np.uint8
  assert codec.compress_image(tiny_model, image) == data  # deterministic
  np.testing.assert_array_equal(codec.decompress_image(data, tiny_model),
                                decoded)


def test_gray_image_on_rgb_model_decodes_to_gray(tiny_model):
  gray = smooth_image(40, 40, channels=1)
  decoded = codec.decompress_image(codec.compress_image(tiny_model, gray),
                                   tiny_model)
  rgb = codec.decompress_image(
      codec.compress_image(tiny_model, np.repeat(gray, 3, axis=2)), tiny_model)
  expected = (rgb.astype(np.int32).sum(axis=2, keepdims=True) + 1) // 3
  np.testing.assert_array_equal(decoded, expected.astype(np.uint8))


def test_grayscale_model():
  model = FactorizedPriorModel(ModelConfig(channels=1, num_filters=8))
  model.freeze_for_coding()
  gray = smooth_image(20, 30, channels=1)
  decoded = codec.decompress_image(codec.compress_image(model, gray), model)
  assert decoded.shape == (20, 30, 1)
  with pytest.raises(ValueError, match="3-channel image cannot be coded"):
    codec.compress_image(model, smooth_image(20, 30))


def test_bad_arrays_are_refused(tiny_model):
  with pytest.raises(ValueError, match="uint8"):
    codec.compress_image(tiny_model, np.zeros((4, 4, 3), np.float32))
  with pytest.raises(ValueError, match="2-channel"):
    codec.compress_image(tiny_model, np.zeros((4, 4, 2), np.uint8))
  with pytest.raises(ValueError, match="outside"):
    codec.compress_image(tiny_model, np.zeros((70000, 1, 3), np.uint8))


def test_file_from_another_model_is_rejected(tiny_model):
  other = FactorizedPriorModel(ModelConfig(num_filters=8, lmbda=0.02))
  other.freeze_for_coding()
  data = codec.compress_image(other, smooth_image(32, 32))
  with pytest.raises(FormatError, match="made by model"):
    codec.decompress_image(data, tiny_model)


def test_every_corruption_class_is_rejected(tiny_model):
  data = codec.compress_image(tiny_model, smooth_image(48, 64))
  damaged = [data[:-5], data[:20], data + b"x", b"", b"GIF89a" + data[6:]]
  damaged += [data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]
              for i in range(len(data))]
  for bad in damaged:
    with pytest.raises(FormatError):
      codec.decompress_image(bad, tiny_model)


# -- tiles, version 1, hostile files --------------------------------------------

# Written by the shipped default model before version 2 existed (smooth_image
# (40, 56)); the SHA-256 of the pixels it decoded to then. That model (no
# longer shipped since the ladder replaced it; the same blobs as commit
# f91b80e's balle/pretrained/bls2017-mse-0.0130) is kept beside it.
V1_FILE = FIXTURES / "v1_smooth_40x56.balle"
V1_MODEL = str(FIXTURES / "v1_model")
V1_PIXELS_SHA256 = ("cdbf24fac9531184183cb34d69a153bc"
                    "c2042c5ef8d4c4951a906604b0e10ad9")


def test_version_1_file_decodes_bit_identically():
  model = pretrained.resolve(V1_MODEL)
  data = V1_FILE.read_bytes()
  assert data[4] == 1
  decoded = codec.decompress_image(data, model)
  assert decoded.shape == (40, 56, 3)
  assert hashlib.sha256(decoded.tobytes()).hexdigest() == V1_PIXELS_SHA256


def test_tiles_code_like_the_whole_image(tiny_model):
  image = smooth_image(100, 150)
  whole = codec.compress_image(tiny_model, image)
  tiled = codec.compress_image(tiny_model, image, tile_size=48)
  header, sections = file_format.unpack(tiled)
  assert header.tile_size == 48 and len(sections) == 3 * 4
  assert sections[-1].shape == (1, 1, 8)  # 4x6 pixels of the last tile
  decoded = codec.decompress_image(tiled, tiny_model)
  np.testing.assert_array_equal(decoded,
                                codec.decompress_image(whole, tiny_model))
  gray = smooth_image(70, 50, channels=1)
  np.testing.assert_array_equal(
      codec.decompress_image(codec.compress_image(tiny_model, gray, 32),
                             tiny_model),
      codec.decompress_image(codec.compress_image(tiny_model, gray),
                             tiny_model))
  with pytest.raises(ValueError, match="multiple of 16"):
    codec.compress_image(tiny_model, image, tile_size=40)


def _forge(data, header=None, sections=None):
  """Re-packs a valid file with fields replaced (checksum recomputed)."""
  old_header, old_sections = file_format.unpack(data, max_pixels=None)
  return file_format.pack(header or old_header, sections or old_sections)


def test_forged_payloads_are_rejected(tiny_model):
  data = codec.compress_image(tiny_model, smooth_image(48, 64))
  header, (section,) = file_format.unpack(data)
  rng = np.random.default_rng(0)
  forged = {
      "empty": [file_format.Section(section.shape, b"")],
      "random": [file_format.Section(section.shape, rng.bytes(500))],
      "extended": [file_format.Section(section.shape, section.data + b"\0")],
      "doubled": [file_format.Section(section.shape, section.data * 2)],
  }
  # (A payload cut short can be the exact code of other latents: that is a
  # valid file of another image, which no check can tell from the original.)
  for name, sections in forged.items():
    with pytest.raises(FormatError, match="section 0"):
      codec.decompress_image(_forge(data, sections=sections), tiny_model)
      pytest.fail(f"{name} payload decoded")


def test_size_claims_must_match_the_sections(tiny_model):
  data = codec.compress_image(tiny_model, smooth_image(48, 64))
  header, (section,) = file_format.unpack(data)
  taller = dataclasses.replace(header, height=96)
  with pytest.raises(FormatError, match=r"section 0 has shape \(3, 4, 8\)"):
    codec.decompress_image(_forge(data, header=taller), tiny_model)
  tiled = dataclasses.replace(header, tile_size=16)
  with pytest.raises(FormatError, match="1 sections for 12 tiles"):
    codec.decompress_image(_forge(data, header=tiled), tiny_model)
  wide = file_format.Section((3, 4, 9), section.data)
  with pytest.raises(FormatError, match="needs"):
    codec.decompress_image(_forge(data, sections=[wide]), tiny_model)
  other = dataclasses.replace(header, architecture="bmshj2018-hyper")
  with pytest.raises(FormatError, match="bmshj2018-hyper"):
    codec.decompress_image(_forge(data, header=other), tiny_model)


def test_huge_claims_are_refused_before_any_work(tiny_model):
  data = codec.compress_image(tiny_model, smooth_image(48, 64))
  header, sections = file_format.unpack(data)
  huge = dataclasses.replace(header, height=65535, width=4096)
  with pytest.raises(FormatError, match="above the limit"):
    codec.decompress_image(_forge(data, header=huge), tiny_model)
  with pytest.raises(FormatError, match="above the limit of 3000"):
    codec.decompress_image(data, tiny_model, max_pixels=3000)
  big = dataclasses.replace(header, height=4096, width=4096)
  with pytest.raises(FormatError, match="1 sections for 16 tiles"):
    codec.decompress_image(_forge(data, header=big), tiny_model)


def test_payloads_that_hang_the_range_decoder_are_rejected_quickly():
  """tfc's decoder counts 0 bits without bound to read an escaped value, and
  reads zeros past the end of its data: this file's random 2998-byte section
  (found by benchmarks/fuzz_decoder.py) kept it busy for minutes. The bound
  leaves a busy machine room: rejected, it takes 0.01 s idle."""
  model = pretrained.resolve(V1_MODEL)
  codec.decompress_image(V1_FILE.read_bytes(), model)  # traced before timing
  data = (FIXTURES / "hang_random_section.balle").read_bytes()
  outcome = []

  def decode():
    try:
      codec.decompress_image(data, model)
    except FormatError as error:
      outcome.append(error)

  thread = threading.Thread(target=decode, daemon=True)
  thread.start()
  thread.join(timeout=60)
  assert not thread.is_alive(), "decoding hangs"
  assert outcome and "section 0 is corrupted" in str(outcome[0])


def test_range_decoder_errors_become_format_errors(tiny_model, monkeypatch):
  data = codec.compress_image(tiny_model, smooth_image(48, 64))

  def failing(*args, **kwargs):
    raise tf.errors.InvalidArgumentError(None, None, "cdf[0]=0 is too large\n"
                                         "  more lines")

  monkeypatch.setattr(tfc, "entropy_decode_channel", failing)
  with pytest.raises(FormatError, match=r"section 0 is corrupted: the range "
                     r"decoder rejects it \(cdf\[0\]=0 is too large\)$"):
    codec.decompress_image(data, tiny_model)


def test_forged_version_1_files_are_rejected():
  model = pretrained.resolve(V1_MODEL)
  data = V1_FILE.read_bytes()
  payload = data[28:-4]

  def v1(height, width, payload):
    body = data[:14] + struct.pack(">HHHHHI", height, width, -(-height // 16),
                                   -(-width // 16), 128, len(payload))
    body += payload
    return body + struct.pack(">I", zlib.adler32(body))

  assert codec.decompress_image(v1(40, 56, payload), model).shape == (
      40, 56, 3)
  for forged in (v1(80, 56, payload), v1(512, 768, payload),
                 v1(40, 56, b""), v1(40, 56, payload + payload)):
    with pytest.raises(FormatError, match="section 0"):
      codec.decompress_image(forged, model)


def test_tile_grids_the_decoder_does_not_accept(tiny_model):
  data = codec.compress_image(tiny_model, smooth_image(48, 64))
  header, sections = file_format.unpack(data)
  odd = dataclasses.replace(header, tile_size=40)
  with pytest.raises(FormatError, match="not a multiple of 16"):
    codec.decompress_image(_forge(data, header=odd), tiny_model)
  many = dataclasses.replace(header, height=2048, width=2048, tile_size=16)
  with pytest.raises(FormatError, match="16384 tiles of 16 pixels are more"):
    codec.decompress_image(_forge(data, header=many), tiny_model)
  # Both checks come before the tiles are listed: billions of forged tiles
  # (found by benchmarks/fuzz_decoder.py) are refused at once.
  for tile_size, message in ((1, "not a multiple of 16"),
                             (16, "14062500 tiles of 16 pixels")):
    huge = dataclasses.replace(header, height=60000, width=60000,
                               tile_size=tile_size)
    with pytest.raises(FormatError, match=message):
      codec.decompress_image(_forge(data, header=huge), tiny_model,
                             max_pixels=None)
