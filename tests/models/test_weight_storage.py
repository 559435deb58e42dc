"""Tests of how weights are stored (balle/models/weight_storage.py)."""

import io

import numpy as np
import pytest

from balle.models import weight_storage


def _kernel(shape=(6, 8, 5, 3), seed=0):
  return np.random.default_rng(seed).normal(0, 0.05, shape).astype(np.float32)


def test_int8_filters_round_each_filter_to_127_levels_of_its_peak():
  kernel = _kernel()
  kernel[1, 2] = 0  # an all-zero filter stays zero
  rounded = weight_storage.round_to_int8_filters(kernel)
  assert rounded.dtype == np.float32
  np.testing.assert_array_equal(rounded[1, 2], 0)
  error = np.abs(rounded - kernel)
  peak = np.abs(kernel).max(axis=(2, 3), keepdims=True)
  assert np.all(error <= 0.51 * peak / 127 + 1e-7)  # half a level (+float16)
  assert 0 < np.linalg.norm(error) / np.linalg.norm(kernel) < 0.01
  assert not np.any(np.signbit(rounded[rounded == 0]))  # no -0.0
  np.testing.assert_array_equal(  # rounding again changes nothing
      weight_storage.round_to_int8_filters(rounded), rounded)


def _write_and_read(weights):
  buffer = io.BytesIO()
  weight_storage.write(buffer, weights)
  buffer.seek(0)
  with np.load(buffer) as archive:
    stored = {name: archive[name] for name in archive.files}
  buffer.seek(0)
  return stored, weight_storage.read(buffer), buffer.getvalue()


def test_each_array_is_stored_exactly_in_its_smallest_form():
  int8_kernel = weight_storage.round_to_int8_filters(_kernel())
  weights = {
      "conv_0/kernel_real": int8_kernel,
      "conv_0/kernel_imag": _kernel(seed=1).astype(np.float16).astype(
          np.float32),  # float16 values, not int8 products
      "conv_0/bias": np.float32([0.5, -0.25]),  # not a kernel: float16
      "gdn_0/gamma": np.float32([[0.1, 0.3], [0.2, 0.4]]),  # float32 values
      "model/cdf": np.int32([0, 7, -3000]),
      "conv_in/kernel_real": weight_storage.round_to_int8_filters(
          _kernel((3, 8, 5, 3))),  # touches the pixels: never int8
  }
  stored, read, data = _write_and_read(weights)
  assert stored["conv_0/kernel_real"].dtype == np.int8
  assert stored["conv_0/kernel_real@scale"].dtype == np.float16
  assert stored["conv_0/kernel_real@scale"].shape == (6, 8, 1, 1)
  assert "conv_0/kernel_imag@scale" not in stored
  assert stored["conv_in/kernel_real"].dtype == np.float32  # not int8
  assert {name: stored[name].dtype for name in (
      "conv_0/kernel_imag", "conv_0/bias", "gdn_0/gamma", "model/cdf")} == {
          "conv_0/kernel_imag": np.float16, "conv_0/bias": np.float16,
          "gdn_0/gamma": np.float32, "model/cdf": np.int16}
  assert set(read) == set(weights)
  for name, array in weights.items():  # bit for bit (-0.0 included)
    assert read[name].astype(array.dtype).tobytes() == array.tobytes()
  assert _write_and_read(weights)[2] == data  # byte-identical archives
  int8_bytes = sum(stored["conv_0/kernel_real" + suffix].nbytes
                   for suffix in ("", "@scale"))
  assert int8_bytes < 0.6 * stored["conv_0/kernel_imag"].nbytes  # float16


@pytest.mark.parametrize("peak", [0.5, 5e-4, 1e-5, 1e-7, 0.0])
def test_rounded_kernels_of_any_magnitude_are_stored_as_int8(peak):
  """Down to float16's subnormal scales (peak / 127 < 6.1e-5), where a
  scale rounded to nearest could put a filter's peak at level 126."""
  kernel = _kernel(seed=3)
  kernel *= peak / np.abs(kernel).max(axis=(2, 3), keepdims=True)
  rounded = weight_storage.round_to_int8_filters(kernel)
  stored, read, _ = _write_and_read({"conv/kernel_real": rounded})
  assert stored["conv/kernel_real"].dtype == np.int8
  assert read["conv/kernel_real"].astype(np.float32).tobytes() == (
      rounded.tobytes())
  if peak >= 1e-4:  # half a level; subnormal scales: the peak's clipping
    np.testing.assert_allclose(rounded, kernel, rtol=0,
                               atol=peak / 127 * (0.5 if peak > 1e-3 else 2))


def test_a_negative_zero_keeps_a_kernel_out_of_int8():
  kernel = weight_storage.round_to_int8_filters(_kernel())
  kernel[0, 0, 0, 0] = -0.0
  stored, read, _ = _write_and_read({"conv/kernel_real": kernel})
  assert stored["conv/kernel_real"].dtype != np.int8
  assert read["conv/kernel_real"].astype(np.float32).tobytes() == (
      kernel.tobytes())


def test_scales_without_their_weights_are_rejected():
  with pytest.raises(ValueError, match="scales without weights"):
    weight_storage.decode({"a": np.zeros(2, np.int8),
                           "b@scale": np.ones(1, np.float16)})
