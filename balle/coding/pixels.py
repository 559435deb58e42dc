"""The pixels a model codes and the pixels it gives back, in TensorFlow ops.

Every architecture codes an image the same way around its transforms:
`to_model_channels` (a gray image on an RGB model is coded as R = G = B),
`replicate_edges_to_multiple` (sides extended to multiples of the stride),
and, after the synthesis, `to_image_pixels` (rounded to uint8, back to gray
when the image was). Tiled decoding (balle.coding.tiling) ends the same way.
"""

import tensorflow as tf


def to_model_channels(image, channels):
  """uint8 image [H, W, C] -> [H, W, channels]: a gray image (C = 1) on an
  RGB model is coded as R = G = B. In TensorFlow ops."""
  image = tf.cond(tf.shape(image)[2] < channels,
                  lambda: tf.repeat(image, channels, axis=2), lambda: image)
  return tf.ensure_shape(image, [None, None, channels])


def replicate_edges_to_multiple(image, multiple):
  """Pads [H, W, C] at the bottom and right, repeating the last row and
  column, to multiples of `multiple`. The decoder crops the padding away;
  coding a smooth extension instead of the convolutions' zero padding keeps
  the borders of odd-sized images sharp at no cost in bits."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  image = tf.concat(
      [image, tf.repeat(image[-1:], (-height) % multiple, axis=0)], axis=0)
  return tf.concat(
      [image, tf.repeat(image[:, -1:], (-width) % multiple, axis=1)], axis=1)


def to_image_pixels(reconstruction, gray, channels):
  """g_s's output [H, W, channels] (nominally 0..1) -> uint8 pixels, their
  rounded mean (R + G + B + 1) // 3 when `gray` (a bool tensor) on an RGB
  model. In TensorFlow ops."""
  image = tf.saturate_cast(tf.round(reconstruction * 255.), tf.uint8)
  if channels == 1:
    return image
  return tf.cond(
      gray,
      lambda: tf.cast((tf.reduce_sum(tf.cast(image, tf.int32), axis=2,
                                     keepdims=True) + 1) // 3, tf.uint8),
      lambda: image)
