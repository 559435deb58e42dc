import numpy as np
import pytest
import tensorflow as tf

from balle.models import losses
from balle.models.bls2017 import FactorizedPriorModel
from conftest import smooth_image


def test_mse_is_on_the_given_scale():
  rng = np.random.default_rng(0)
  a = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
  b = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
  assert float(losses.mse(a, b)) == pytest.approx(np.mean((a - b) ** 2),
                                                  rel=1e-6)


def test_distortions_are_found_by_name():
  assert losses.DISTORTIONS == ("mse",)
  assert losses.distortion_function("mse") is losses.mse
  with pytest.raises(ValueError, match="'ms-ssim' .*known: mse"):
    losses.distortion_function("ms-ssim")


def test_model_loss_is_rate_plus_lambda_times_distortion_exactly():
  model = FactorizedPriorModel(num_filters=8, lmbda=0.05)
  images = tf.constant(smooth_image(32, 48)[None].astype(np.float32))
  bpp, distortion, loss = model.rate_distortion(images, training=False)
  assert loss.dtype == tf.float32
  assert loss.numpy() == (bpp.numpy() + np.float32(0.05) * distortion.numpy())
  assert float(losses.rate_distortion_loss(1.5, 10.0, 0.25)) == 4.0
