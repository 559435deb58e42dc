"""Reading images into uint8 arrays and writing them, safely.

`read_image` accepts anything Pillow decodes (PNG, JPEG, TIFF, WebP, BMP, ...)
and returns [H, W, 1] (gray) or [H, W, 3] (RGB) uint8 pixels. Conversions that
change the data (palette, 16-bit, CMYK, ...) emit an ImageConversionWarning.
Images with an alpha channel are refused unless the caller drops alpha;
animations and multi-page files are refused (which frame would be meant?);
images above `max_pixels` are refused before their pixels are decoded.
"""

import os
import warnings

import numpy as np
from PIL import Image

from balle.io.safe_write import write_file_atomic

# The most pixels an image read or a file decoded may have (file_format.unpack
# too). Like Pillow's decompression-bomb limit (89.5 Mpix warns, 179 Mpix
# fails): 128 Mpix, e.g. 16384 x 8192; callers and `balle --max_pixels` can
# change it.
DEFAULT_MAX_PIXELS = 1 << 27
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageConversionWarning(UserWarning):
  """An input image was converted in a way that changes its pixel data."""


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def read_image(path, drop_alpha=False, max_pixels=DEFAULT_MAX_PIXELS):
  """Returns the image at `path` as a uint8 array [H, W, 1] or [H, W, 3].

  Raises ValueError naming the problem for files Pillow cannot read,
  images above `max_pixels` (the .balle decoder's default limit, so what is
  encoded decodes; None: Pillow's own limit of 2 x Image.MAX_IMAGE_PIXELS
  only, which also applies) and files with several frames."""
  try:
    with warnings.catch_warnings():
      # Pillow warns above its own limit; max_pixels is checked here instead.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      with Image.open(path) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
          raise ValueError(f"{path}: image of {width}x{height} = "
                           f"{width * height} pixels is above the limit of "
                           f"{max_pixels} pixels (max_pixels)")
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
          raise ValueError(f"{path}: file has {frames} frames (an animation "
                           "or a multi-page file); save the one frame to "
                           "code as its own image")
        image.load()
  except FileNotFoundError:
    raise
  except Image.DecompressionBombError as error:
    raise ValueError(f"{path}: {error}") from None
  except Exception as error:  # pylint: disable=broad-except
    # Pillow's plugins raise many types on malformed files (OSError,
    # SyntaxError, struct.error, EOFError, ...): all mean "unreadable".
    if str(error).startswith(f"{path}: "):
      raise
    raise ValueError(f"{path}: not an image Pillow can read ({error})") from None
  return image_to_array(image, name=str(path), drop_alpha=drop_alpha)


def image_to_array(image, name="image", drop_alpha=False):
  """Converts a PIL image to a uint8 gray or RGB array (see module doc)."""
  mode = image.mode
  if mode == "P":
    has_alpha = "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    _warn(f"{name}: palette image converted to {image.mode}")
    mode = image.mode
  if mode in _ALPHA_MODES:
    if not drop_alpha:
      raise ValueError(f"{name}: image has an alpha channel ({mode}), which "
                       "the codec does not store; pass --drop_alpha to code "
                       "the color channels only")
    image = image.convert("L" if mode.startswith(("L", "l")) else "RGB")
    _warn(f"{name}: alpha channel dropped")
  elif mode in _SIXTEEN_BIT_MODES:
    values = np.asarray(image, dtype=np.float64)
    if values.max(initial=0) > 65535 or values.min(initial=0) < 0:
      raise ValueError(f"{name}: {mode} values outside 0..65535")
    _warn(f"{name}: {mode} image reduced to 8 bits")
    return np.round(values / 257.).astype(np.uint8)[..., None]
  elif mode not in ("L", "RGB"):
    target = "L" if mode in ("1", "F") else "RGB"
    if mode == "F":
      raise ValueError(f"{name}: floating-point images are not supported")
    image = image.convert(target)
    _warn(f"{name}: {mode} image converted to {target}")
  array = np.asarray(image, dtype=np.uint8)
  if array.ndim == 2:
    array = array[..., None]
  return array


def _warn(message):
  warnings.warn(message, ImageConversionWarning, stacklevel=3)


def image_format(path):
  """Pillow's format name for the suffix of `path`; ValueError if none or
  if Pillow cannot write it."""
  suffix = os.path.splitext(path)[1].lower()
  name = Image.registered_extensions().get(suffix)
  if name is None or name not in Image.SAVE:
    raise ValueError(f"{path}: unknown or unwritable image file suffix "
                     f"{suffix!r} (e.g. {', '.join(IMAGE_SUFFIXES)})")
  return name


def write_image(path, array, overwrite=False):
  """Writes a uint8 [H, W, 1|3] array; the format follows the file suffix."""
  name = image_format(path)
  array = np.asarray(array)
  image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
  write_file_atomic(path, lambda f: image.save(f, format=name),
                    overwrite=overwrite)
