"""The training objective: loss = R + lambda * D, with the distortion D
chosen by name (`ModelConfig.distortion`).

A distortion function takes the original and the reconstruction, float
[B, H, W, C] on the 0..255 scale, and returns a scalar tensor that training
minimizes. A new metric (e.g. "ms-ssim" as 1 - MS-SSIM) is one function
and one entry in `_DISTORTIONS`.
"""

import tensorflow as tf


def mse(original, reconstruction):
  """Mean squared error on the 0..255 scale (the paper's D)."""
  return tf.reduce_mean(tf.math.squared_difference(original, reconstruction))


_DISTORTIONS = {"mse": mse}
DISTORTIONS = tuple(_DISTORTIONS)


def distortion_function(name):
  """The distortion function called `name`."""
  if name not in _DISTORTIONS:
    raise ValueError(f"unknown distortion {name!r} (known: "
                     f"{', '.join(DISTORTIONS)})")
  return _DISTORTIONS[name]


def rate_distortion_loss(bpp, distortion, lmbda):
  """R + lambda * D."""
  return bpp + lmbda * distortion
