"""Tests of balle/models/widen.py: widening keeps the reconstruction exactly."""

import numpy as np
import pytest
import tensorflow as tf

from balle.models import widen
from balle.models.bls2017 import FactorizedPriorModel, ModelConfig
from conftest import smooth_image


def _trained_like(num_filters, seed):
  """A model whose weights are perturbed away from the initialization, so
  that copying mistakes show (fresh GDN/bias values are too regular)."""
  tf.random.set_seed(seed)
  model = FactorizedPriorModel(ModelConfig(num_filters=num_filters))
  rng = np.random.default_rng(seed)
  for variable in model.trainable_variables:
    value = variable.numpy()
    variable.assign(value + 0.05 * np.abs(value).mean() *
                    rng.standard_normal(value.shape).astype(value.dtype))
  return model


def test_widened_model_reconstructs_the_same_image():
  narrow = _trained_like(8, seed=1)
  wide = widen.widened_copy(narrow, 12, seed=2)
  assert wide.config.num_filters == 12
  image = smooth_image(48, 64)[None].astype(np.float32)
  latents = narrow.analysis(image / 255.)
  wide_latents = wide.analysis(image / 255.)
  np.testing.assert_allclose(wide_latents[..., :8], latents, rtol=1e-5,
                             atol=1e-5)
  assert np.abs(wide_latents[..., 8:]).max() > 0  # new channels are alive
  rounded = tf.round(wide_latents)
  np.testing.assert_allclose(narrow.synthesis(rounded[..., :8]),
                             wide.synthesis(rounded), rtol=1e-5, atol=1e-5)


def test_new_channels_get_gradients():
  narrow = _trained_like(8, seed=3)
  wide = widen.widened_copy(narrow, 12, seed=4)
  image = smooth_image(32, 32)[None].astype(np.float32)
  with tf.GradientTape() as tape:
    _, _, loss = wide.rate_distortion(image, training=True)
  names = [v.name for v in wide.trainable_variables]
  gradients = dict(zip(names, tape.gradient(loss, wide.trainable_variables)))
  deconv_in = [g for n, g in gradients.items()
               if "deconv_0" in n and "kernel_real" in n]
  # Zero weights from the new latent channels still get a gradient.
  assert deconv_in and np.abs(deconv_in[0].numpy()[8:]).max() > 0


def test_new_latent_channels_start_silent_and_free():
  narrow = _trained_like(8, seed=5)
  wide = widen.widened_copy(narrow, 8, seed=6, latent_channels=12)
  assert wide.config.num_latent_channels == 12
  image = smooth_image(48, 64)[None].astype(np.float32)
  latents = wide.analysis(image / 255.)
  np.testing.assert_allclose(latents[..., :8], narrow.analysis(image / 255.),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      narrow.synthesis(tf.round(latents[..., :8])),
      wide.synthesis(tf.round(latents)), rtol=1e-5, atol=1e-5)
  old, new = latents[..., :8], latents[..., 8:]
  assert 0 < np.abs(new).max() < 0.05 * np.abs(old).max()
  # Noisy latents of the new channels cost ~nothing under their prior;
  # a fresh prior (the wide model's own before silencing) costs bits.
  noisy = new + tf.random.uniform(tf.shape(new), -0.5, 0.5, seed=1)
  noisy = tf.pad(noisy, [[0, 0]] * 3 + [[8, 0]])  # at channels 8..11
  bits = -np.log2(wide.prior.prob(noisy))
  assert bits[..., 8:].mean() < 0.05
  fresh = FactorizedPriorModel(ModelConfig(num_filters=8, latent_channels=12))
  assert -np.log2(fresh.prior.prob(noisy))[..., 8:].mean() > 1


def test_widen_refuses_narrower_or_other_models():
  narrow = FactorizedPriorModel(ModelConfig(num_filters=8))
  with pytest.raises(ValueError, match="filters"):
    widen.widen(FactorizedPriorModel(ModelConfig(num_filters=12)), narrow)
  with pytest.raises(ValueError, match="latent channels"):
    widen.widen(FactorizedPriorModel(ModelConfig(num_filters=8,
                                                 latent_channels=12)),
                FactorizedPriorModel(ModelConfig(num_filters=12,
                                                 latent_channels=10)))
  with pytest.raises(ValueError, match="gdn_form"):
    widen.widen(narrow, FactorizedPriorModel(
        ModelConfig(num_filters=12, gdn_form="simplified")))


def test_rescale_latents_keeps_the_reconstruction_and_stretches_the_prior():
  tf.random.set_seed(3)
  model = FactorizedPriorModel(ModelConfig(num_filters=8, lmbda=0.05))
  image = tf.constant(smooth_image(32, 32)[None].astype(np.float32) / 255.)
  latents = model.analysis(image)
  reconstruction = model.synthesis(latents)
  points = tf.linspace(-3., 3., 7)[:, None] * tf.ones([1, 8])
  density = model.prior.base.prob(points)
  widen.rescale_latents(model, 2.5)
  np.testing.assert_allclose(model.analysis(image), 2.5 * latents,
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(model.synthesis(2.5 * latents), reconstruction,
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(model.prior.base.prob(2.5 * points),
                             density / 2.5, rtol=1e-4, atol=1e-7)
  with pytest.raises(ValueError, match="factor"):
    widen.rescale_latents(model, 0)
