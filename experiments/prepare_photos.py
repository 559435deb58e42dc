"""Splits a folder of photographs into training images and a held-out test set.

    python -m experiments.prepare_photos --source=imagenet-sample-images \
        --output_dir=/work/data/imagenet --num_holdout=24

Used for the 1000-image ImageNet sample (data/README.md). Kept: RGB images
whose shorter side is at least --min_side (the training patch) and, if the
file is a JPEG, whose mean luma quantization step is at most
--max_luma_quant_step (~4.6 is JPEG quality ~96; coarser files carry block
artifacts a codec should not learn). The --num_holdout kept images with the
smallest SHA-256 of "holdout:" + file name go to holdout/ as PNG (decoded
pixels, lossless): photographs no model trains on, to measure the models on
images the project has never seen. The others are copied unchanged to
train/. Prints the held-out names.
"""

import hashlib
import os
import shutil

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from balle import data

flags.DEFINE_string("source", None, "Folder of photographs.")
flags.DEFINE_string("output_dir", None, "Writes train/ and holdout/ here.")
flags.DEFINE_integer("num_holdout", 24, "Images held out for testing.")
flags.DEFINE_integer("min_side", 256, "Smallest shorter side kept.")
flags.DEFINE_float("max_luma_quant_step", 5.0, "Largest mean JPEG luma "
                   "quantization step kept.")
flags.mark_flags_as_required(["source", "output_dir"])
FLAGS = flags.FLAGS


def _keep(path):
  with Image.open(path) as image:
    if image.mode != "RGB" or min(image.size) < FLAGS.min_side:
      return False
    tables = getattr(image, "quantization", None)
    return not tables or np.mean(tables[0]) <= FLAGS.max_luma_quant_step


def _holdout_key(path):
  return hashlib.sha256(b"holdout:" + os.path.basename(path).encode()).digest()


def main(argv):
  del argv
  files = [f for f in data.expand_patterns(FLAGS.source) if _keep(f)]
  holdout = set(sorted(files, key=_holdout_key)[:FLAGS.num_holdout])
  train_dir = os.path.join(FLAGS.output_dir, "train")
  holdout_dir = os.path.join(FLAGS.output_dir, "holdout")
  for folder in (train_dir, holdout_dir):
    if os.path.exists(folder) and os.listdir(folder):
      raise FileExistsError(f"{folder} is not empty")
    os.makedirs(folder, exist_ok=True)
  for path in files:
    name = os.path.basename(path)
    if path in holdout:
      with Image.open(path) as image:
        image.save(os.path.join(holdout_dir,
                                os.path.splitext(name)[0] + ".png"))
    else:
      shutil.copyfile(path, os.path.join(train_dir, name))
  print(f"{len(files)} kept: {len(files) - len(holdout)} in {train_dir}, "
        f"{len(holdout)} in {holdout_dir}")
  for path in sorted(holdout):
    print(os.path.basename(path))


if __name__ == "__main__":
  app.run(main)
