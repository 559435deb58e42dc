"""Which input pipeline a training run uses, and the images it trains and
validates on (`training_data`).

Training patches come from images decoded once into memory
(balle.data.patches.PatchSampler, the faster for sets that fit) or from the
files, decoded as they are needed by tf.data (balle.data.streaming.PatchStream).
Both draw the same patches (balle.data.patches.draw_patch) and offer the same
`dataset()`. `choose_pipeline` decides from the decoded size, which
`read_headers` reads from the image headers without decoding a pixel (Pillow
opens files lazily): height x width x channels bytes, uint8 as balle.data holds
images. In memory when that is at most the memory budget (--memory_budget_gib),
streamed otherwise; --input_pipeline forces either. So, unless forced, nothing
larger than the budget is decoded into memory.

Before training starts, and alike for both pipelines, files whose header
cannot be read are dropped with a warning naming each, and images smaller
than the patch size are dropped and counted in the log (as load_images
always did); files that fail later, while decoding, are skipped with a
warning too (balle.data.files.load_images, balle.data.streaming.PatchStream).
"""

import os

from absl import logging
from PIL import Image

from balle.data import streaming
from balle.data.files import crop_to_multiple
from balle.data.files import expand_patterns
from balle.data.files import load_images
from balle.data.files import split_validation
from balle.data.files import warn_skipped
from balle.data.patches import PatchSampler
from balle.io import image_io
from balle.io.image_io import DEFAULT_MAX_PIXELS

PIPELINES = ("auto", "memory", "stream")
GIB = 2 ** 30
# Pillow modes that image_io.read_image returns as one channel.
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L")


def read_headers(files, channels=3):
  """[(path, height, width, channels)] of the `files` whose header Pillow
  reads, `channels` being those decoding gives (None: as stored); the others
  are left out with a warning naming each. No pixels are decoded."""
  headers = []
  for path in files:
    try:
      with Image.open(path) as image:
        width, height = image.size
        stored = 1 if image.mode in _GRAY_MODES else 3
    except Exception as error:  # pylint: disable=broad-except
      # Pillow raises many types on malformed headers (see image_io).
      warn_skipped(path, f"header unreadable ({error})")
      continue
    if width * height > DEFAULT_MAX_PIXELS:
      warn_skipped(path, f"{width}x{height} is above the limit of "
                   f"{DEFAULT_MAX_PIXELS} pixels")
      continue
    headers.append((path, height, width, channels or stored))
  return headers


def choose_pipeline(pipeline, decoded_bytes, memory_budget_gib):
  """("memory" or "stream", why): `pipeline` unless it is "auto", which
  means in memory if `decoded_bytes` are at most the budget."""
  if pipeline not in PIPELINES:
    raise ValueError(f"input pipeline must be one of {PIPELINES}, got "
                     f"{pipeline!r}")
  fits = decoded_bytes <= memory_budget_gib * GIB
  size = (f"{decoded_bytes / GIB:.2f} GiB decoded "
          f"{'<=' if fits else '>'} --memory_budget_gib={memory_budget_gib:g}")
  if pipeline != "auto":
    return pipeline, f"--input_pipeline={pipeline}; {size}"
  return ("memory" if fits else "stream"), size


def training_data(patterns, patchsize, batchsize, multiple, num_validation=0,
                  seed=0, channels=3, validation_patterns=(),
                  random_downsample=False, pipeline="auto",
                  memory_budget_gib=2.0):
  """(patches, list of validation images).

  `patches` is a balle.data.patches.PatchSampler or a
  balle.data.streaming.PatchStream over the training images, as
  `choose_pipeline` decides; logs the choice and why, and the number of images
  found, held out, skipped and used. Validation images are decoded into memory
  and cropped to multiples of `multiple` (the model's downsampling factor),
  never skipped.
  """
  files = expand_patterns(patterns)
  if not files:
    raise FileNotFoundError(f"no images ({', '.join(image_io.IMAGE_SUFFIXES)})"
                            f" match {patterns}")
  train_files, validation_files = split_validation(files, num_validation,
                                                   validation_patterns)
  headers = read_headers(train_files, channels)
  usable = [h for h in headers if min(h[1:3]) >= patchsize]
  if not usable:
    raise ValueError(f"no training images of at least {patchsize}x"
                     f"{patchsize} px (the patch size) in {patterns}")
  decoded_bytes = sum(height * width * c for _, height, width, c in usable)
  choice, why = choose_pipeline(pipeline, decoded_bytes, memory_budget_gib)
  logging.info("training images: %d found, %d held out for validation, %d "
               "unreadable, %d smaller than %d px, %d used (%.1f Mpix)",
               len(files), len(validation_files),
               len(train_files) - len(headers), len(headers) - len(usable),
               patchsize, len(usable),
               sum(h * w for _, h, w, _ in usable) / 1e6)
  if choice == "memory":
    if decoded_bytes > memory_budget_gib * GIB:
      logging.warning("input pipeline: in memory, as forced, above the "
                      "memory budget (%s)", why)
    else:
      logging.info("input pipeline: images decoded into memory (%s)", why)
    images, _ = load_images([path for path, _, _, _ in usable], patchsize,
                            channels, skip_unreadable=True)
    patches = PatchSampler(images, patchsize, batchsize, seed,
                           random_downsample)
  else:
    logging.info("input pipeline: streamed from the files by tf.data, %d "
                 "patches per decoded image (%s)",
                 streaming.PATCHES_PER_IMAGE, why)
    patches = streaming.PatchStream([path for path, _, _, _ in usable],
                                    patchsize, batchsize, seed,
                                    random_downsample, channels)
  validation, _ = load_images(validation_files, 0, channels)
  validation = [crop_to_multiple(a, multiple) for a in validation]
  logging.info("validation images: %s",
               ", ".join(os.path.basename(f) for f in validation_files))
  return patches, validation
