import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from balle.coding import codec
from balle.evaluation import metrics
from balle.models.bls2017 import FactorizedPriorModel, ModelConfig
from conftest import rate_estimates
from conftest import smooth_image


def test_config_defaults_follow_the_paper():
  assert ModelConfig(channels=3).num_filters == 192
  assert ModelConfig(channels=1).num_filters == 128
  assert ModelConfig(lmbda=0.013).name == "bls2017-mse-0.0130"
  with pytest.raises(ValueError, match="channels"):
    ModelConfig(channels=4)
  with pytest.raises(ValueError, match="gdn_form"):
    ModelConfig(gdn_form="fancy")


def test_config_document_is_unchanged_by_flag_metadata():
  """config.json and the model id hash dataclasses.asdict(config): the help
  texts (field metadata) must not enter it."""
  assert dataclasses.asdict(ModelConfig(num_filters=128)) == {
      "lmbda": 0.013, "channels": 3, "num_filters": 128, "latent_channels": 0,
      "gdn_form": "paper", "architecture": "bls2017", "distortion": "mse",
      "name": "bls2017-mse-0.0130"}
  assert dataclasses.fields(ModelConfig)[0].metadata["help"]


def test_latent_channels_default_to_num_filters_without_changing_ids():
  """M = N is stored as latent_channels 0 and left out of the model id (as
  for every model saved before M was a setting); another M is in it."""
  assert ModelConfig(num_filters=8, latent_channels=8) == ModelConfig(
      num_filters=8)
  assert ModelConfig(num_filters=8).num_latent_channels == 8
  assert ModelConfig(num_filters=8, latent_channels=12).num_latent_channels == 12
  with pytest.raises(ValueError, match="latent_channels"):
    ModelConfig(latent_channels=-1)
  tf.random.set_seed(0)
  same = FactorizedPriorModel(ModelConfig(num_filters=8))
  tf.random.set_seed(0)
  wider = FactorizedPriorModel(ModelConfig(num_filters=8, latent_channels=12))
  assert wider.section_shapes(40, 56) == [(3, 4, 12)]
  assert wider.prior.batch_shape == [12]
  wider.freeze_for_coding()
  image = smooth_image(40, 56)
  decoded = codec.decompress_image(codec.compress_image(wider, image), wider)
  assert decoded.shape == image.shape
  same.freeze_for_coding()
  document = dataclasses.asdict(same.config)
  del document["latent_channels"]
  assert "latent_channels" not in json.dumps(document)
  # The id hashes the document without the settings at their old values.
  digest = hashlib.sha256(json.dumps(
      {k: v for k, v in document.items()
       if k not in ("architecture", "distortion")}, sort_keys=True).encode())
  for name, variable in sorted(same.named_weights().items()):
    digest.update(name.encode())
    digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
  assert same.model_id == digest.digest()[:8]


def test_loss_is_rate_plus_lambda_times_mse():
  model = FactorizedPriorModel(ModelConfig(num_filters=8, lmbda=0.05))
  images = smooth_image(40, 56)[None].astype(np.float32)
  bpp, mse_255, loss = model.rate_distortion(images, training=True)
  assert bpp > 0 and mse_255 > 0
  assert float(loss) == pytest.approx(float(bpp) + 0.05 * float(mse_255))
  # An untrained synthesis outputs ~0, so the MSE is ~mean(x^2) on the 0..255
  # scale (it would be < 1 on a 0..1 scale).
  assert float(mse_255) == pytest.approx(np.mean(np.square(images)), rel=0.5)


def test_rate_estimate_matches_coded_bits():
  """Train briefly, then compare the noisy (training) rate, the ideal code
  length of the rounded latents and the actual range-coded payload."""
  tf.random.set_seed(0)
  model = FactorizedPriorModel(ModelConfig(num_filters=16, lmbda=1.0))
  noisy_bpp, ideal_bpp, coded_bpp = rate_estimates(model,
                                                   smooth_image(128, 128))
  assert coded_bpp > 0.05  # the model codes real information
  assert ideal_bpp == pytest.approx(coded_bpp, rel=0.03, abs=8 * 4 / 128**2)
  assert noisy_bpp == pytest.approx(coded_bpp, rel=0.10)


def test_save_load_round_trip(tiny_model, tiny_model_dir, tmp_path):
  loaded = FactorizedPriorModel.load(tiny_model_dir)
  assert loaded.model_id == tiny_model.model_id
  assert loaded.config == tiny_model.config
  image = smooth_image(50, 30)
  assert (codec.compress_image(loaded, image)
          == codec.compress_image(tiny_model, image))
  with pytest.raises(FileExistsError):
    loaded.save(tiny_model_dir)
  size = sum(os.path.getsize(os.path.join(tiny_model_dir, f))
             for f in os.listdir(tiny_model_dir))
  assert size < 200_000


def test_corrupted_weights_are_detected(tiny_model, tmp_path):
  tiny_model.save(str(tmp_path))
  arrays = dict(np.load(tmp_path / "weights.npz"))
  arrays["conv_0/kernel_real"].flat[0] += 1.0
  np.savez(tmp_path / "weights.npz", **arrays)
  with pytest.raises(ValueError, match="corrupted"):
    FactorizedPriorModel.load(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no model"):
    FactorizedPriorModel.load(str(tmp_path / "missing"))


def test_unfrozen_model_cannot_be_saved(tmp_path):
  model = FactorizedPriorModel(ModelConfig(num_filters=8))
  with pytest.raises(RuntimeError, match="freeze_for_coding"):
    model.save(str(tmp_path))


_CODE_IN_SUBPROCESS = """
import sys, numpy as np
from balle.coding import codec
from balle.evaluation import metrics
from balle.models.bls2017 import FactorizedPriorModel
model = FactorizedPriorModel.load(sys.argv[1])
image = np.load(sys.argv[2])
data = codec.compress_image(model, image)
open(sys.argv[3] + ".balle", "wb").write(data)
np.save(sys.argv[3] + ".npy", codec.decompress_image(data, model))
"""


def test_coding_is_deterministic_across_processes(tiny_model_dir, tiny_model,
                                                  tmp_path):
  image = smooth_image(70, 45)
  np.save(tmp_path / "image.npy", image)
  for run in ("a", "b"):
    subprocess.run([sys.executable, "-c", _CODE_IN_SUBPROCESS, tiny_model_dir,
                    str(tmp_path / "image.npy"), str(tmp_path / run)],
                   check=True)
  data_a = (tmp_path / "a.balle").read_bytes()
  assert data_a == (tmp_path / "b.balle").read_bytes()
  assert data_a == codec.compress_image(tiny_model, image)
  decoded = codec.decompress_image(data_a, tiny_model)
  np.testing.assert_array_equal(decoded, np.load(tmp_path / "a.npy"))
  np.testing.assert_array_equal(decoded, np.load(tmp_path / "b.npy"))


def _assert_codes_as_it_loads(copy, directory, source, image):
  """The `copy` of `source` saved in `directory` loads with its model id
  (another than the source's) and codes `image` as the copy does; returns
  the decoded pixels."""
  loaded = FactorizedPriorModel.load(directory)
  assert loaded.model_id == copy.model_id != source.model_id
  data = codec.compress_image(loaded, image)
  assert data == codec.compress_image(copy, image)
  decoded = codec.decompress_image(data, loaded)
  np.testing.assert_array_equal(decoded, codec.decompress_image(data, copy))
  return decoded


def test_half_precision_copy_saves_compactly(tiny_model, tmp_path):
  image = smooth_image(40, 56)
  full, half = tmp_path / "full", tmp_path / "half"
  tiny_model.save(str(full))
  copy = tiny_model.half_precision_copy()
  copy.save(str(half))
  with np.load(half / "weights.npz") as arrays:
    assert arrays["conv_0/kernel_real"].dtype == np.float16
    assert arrays["continuous_batched_entropy_model/cdf"].dtype == np.int16
  assert (half / "weights.npz").stat().st_size < 0.7 * (  # npz headers
      full / "weights.npz").stat().st_size
  _assert_codes_as_it_loads(copy, str(half), tiny_model, image)


def test_compact_copy_stores_int8_kernels_and_codes_as_it_loads(tiny_model,
                                                                tmp_path):
  image = smooth_image(40, 56)
  compact = tmp_path / "compact"
  copy = tiny_model.compact_copy()
  copy.save(str(compact))
  with np.load(compact / "weights.npz") as arrays:
    assert arrays["conv_1/kernel_real"].dtype == np.int8
    assert arrays["conv_1/kernel_real@scale"].dtype == np.float16
    assert arrays["conv_0/kernel_real"].dtype == np.float16  # RGB in
    assert arrays["gdn_0/reparam_beta"].dtype == np.float16
  decoded = _assert_codes_as_it_loads(copy, str(compact), tiny_model, image)
  assert metrics.psnr_rgb(image, decoded) == (
      pytest.approx(metrics.psnr_rgb(image, codec.decompress_image(
          codec.compress_image(tiny_model, image), tiny_model)), abs=0.5))


def test_mixed_precision_model_codes_only_through_a_float32_copy():
  exact = FactorizedPriorModel(num_filters=8)
  mixed = FactorizedPriorModel(exact.config, precision="mixed_bfloat16")
  mixed.set_weights(exact.get_weights())
  with pytest.raises(ValueError, match="float32"):
    mixed.freeze_for_coding()
  copy = mixed.coding_copy()
  exact.freeze_for_coding()
  assert copy.precision == "float32" and copy.model_id == exact.model_id
  image = smooth_image(40, 56)
  assert codec.compress_image(copy, image) == codec.compress_image(
      exact, image)


def test_straight_through_decodes_rounded_latents_with_gradients():
  """straight_through: the distortion is that of the rounded latents (as
  coded), the rate that of the noisy ones, and g_a still gets a gradient
  from the distortion."""
  tf.random.set_seed(0)
  model = FactorizedPriorModel(ModelConfig(num_filters=8, lmbda=0.05))
  images = tf.constant(smooth_image(32, 48)[None].astype(np.float32))
  _, rounded_mse, _ = model.rate_distortion(images, training=False)
  with tf.GradientTape() as tape:
    bpp, mse_255, _ = model.rate_distortion(images, training=True,
                                            straight_through=True)
  assert float(mse_255) == pytest.approx(float(rounded_mse), rel=1e-5)
  _, noisy_mse, _ = model.rate_distortion(images, training=True)
  assert float(noisy_mse) != pytest.approx(float(rounded_mse), rel=1e-5)
  gradients = tape.gradient(mse_255, model.analysis.trainable_variables)
  assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients
             if g is not None)
  assert float(bpp) > 0
