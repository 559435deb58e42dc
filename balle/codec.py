"""Images to .balle file bytes and back, with a trained, frozen model.

The model turns pixels into a range-coded payload (`FactorizedPriorModel.
compress`); `file_format` wraps the payload with the header and checksum.
"""

import numpy as np
import tensorflow as tf

from balle import file_format


def compress_image(model, image):
  """uint8 array [H, W, C] -> complete file bytes.

  C must equal the model's channel count; an RGB model also takes grayscale
  images (C = 1), which it codes as R = G = B and decodes back to gray.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3:
    raise ValueError(f"expected a uint8 array [H, W, C], got {image.dtype} "
                     f"with shape {image.shape}")
  height, width, channels = image.shape
  if channels not in (1, model.config.channels):
    raise ValueError(f"a {channels}-channel image cannot be coded with a "
                     f"{model.config.channels}-channel model")
  if not (1 <= height <= file_format.MAX_IMAGE_SIZE and
          1 <= width <= file_format.MAX_IMAGE_SIZE):
    raise ValueError(f"image size {height}x{width} is outside the supported "
                     f"range 1..{file_format.MAX_IMAGE_SIZE} per side")
  payload, latent_shape = model.compress(tf.constant(image))
  latent_height, latent_width = (int(v) for v in latent_shape.numpy())
  header = file_format.Header(
      channels=channels, model_id=model.model_id, height=height, width=width,
      latent_height=latent_height, latent_width=latent_width,
      latent_channels=model.config.num_filters)
  return file_format.pack(header, payload.numpy())


def decompress_image(data, model):
  """Complete file bytes -> uint8 array [H, W, C].

  Raises file_format.FormatError if the bytes are not a valid file, or were
  written by a different model than `model`.
  """
  header, payload = file_format.unpack(data)
  check_model(header, model)
  image = model.decompress(
      tf.constant(payload),
      tf.constant([header.latent_height, header.latent_width], tf.int32),
      tf.constant([header.height, header.width], tf.int32),
      tf.constant(header.channels, tf.int32))
  return image.numpy()


def check_model(header, model):
  """Raises FormatError unless `model` is the one that wrote `header`."""
  if header.model_id != model.model_id:
    raise file_format.FormatError(
        f"file was made by model {header.model_id.hex()}, not by the given "
        f"model {model.config.name} ({model.model_id.hex()})")
  if header.latent_channels != model.config.num_filters:
    raise file_format.FormatError(
        f"file has {header.latent_channels} latent channels, the model "
        f"{model.config.num_filters}")
  if header.channels not in (1, model.config.channels):
    raise file_format.FormatError(
        f"file has {header.channels} channels, the model "
        f"{model.config.channels}")
