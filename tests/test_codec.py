import numpy as np
import pytest

from balle import codec, file_format
from balle.file_format import FormatError
from balle.model import FactorizedPriorModel, ModelConfig
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
