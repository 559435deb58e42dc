"""Builds data/extra/train/: clean photographs from public repositories.

    python -m experiments.prepare_extra_photos --checkouts_dir=/tmp/photo_src \
        --output_dir=data/extra/train \
        --reference_dirs=../shared/data/train,../shared/data/kodak,data/imagenet

Each entry of SOURCES names a public GitHub repository, the commit the set
was built from and the folders of photographs taken from it;
`--checkouts_dir` holds one checkout of each at that commit, in a folder
named owner+name (data/README.md, "Extra training photographs", gives the
clone commands). Every source goes to its own subfolder of --output_dir,
curated by balle.data.photo_curation: RGB, shorter side >= --min_side, JPEG luma
quantization step <= --max_luma_quant_step, no exact or near copy of a
reference image or of an earlier kept image, and images above --max_pixels
downsampled (Lanczos) to a shorter side of --max_short_side and stored as
PNG. Writes manifest.json (counts, megapixels, rejections) beside the
source folders.
"""

import fnmatch
import glob
import json
import os

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from balle import data
from balle.data import photo_curation

# name, repository, commit, folders (globs under the checkout), file name
# globs left out, licence or terms as stated by the repository.
SOURCES = [
    dict(name="urban100", repo="jbhuang0604/SelfExSR",
         commit="8f6dd8c1d20cb7e8792a7177b4f6fd677633f598",
         include=["data/Urban100/image_SRF_4/*_HR.png"], exclude=[],
         licence="research code and test data of Huang et al., CVPR 2015; "
                 "no licence file (Urban100: Flickr photographs)"),
    dict(name="sunhays80", repo="jbhuang0604/SelfExSR",
         commit="8f6dd8c1d20cb7e8792a7177b4f6fd677633f598",
         include=["data/Sun-Hays80/image_SRF_8/*_HR.png"], exclude=[],
         licence="as urban100 (Sun-Hays 80: Sun and Hays, ICCP 2012)"),
    dict(name="set14", repo="jbhuang0604/SelfExSR",
         commit="8f6dd8c1d20cb7e8792a7177b4f6fd677633f598",
         include=["data/Set14/image_SRF_4/*_HR.png"],
         # comic (a drawing), lenna, ppt3 (a slide).
         exclude=["img_005_*", "img_009_*", "img_013_*"],
         licence="as urban100 (Set14: Zeyde et al. 2010)"),
    dict(name="mcmaster", repo="JingyunLiang/SwinIR",
         commit="6545850fbf8df298df73d81f3e8cba638787c8bd",
         include=["testsets/McMaster/*"], exclude=[],
         licence="Apache-2.0 repository; McMaster: Zhang et al. 2011, "
                 "research test set"),
    dict(name="metadata_extractor", repo="drewnoakes/metadata-extractor-images",
         commit="4beba640487802442bc9931fb01274e908102d3a",
         include=["jpg/*.jpg", "jpg/*.JPG", "jpg/*.jpeg"],
         # A thermal-camera screen, a scanned print, a photo of a monitor.
         exclude=["FLIR iPhone device.jpg", "Photoshop (2).jpg",
                  "Pentax ist D.jpg"],
         licence="README: 'You are free to use these media files however "
                 "you wish.' (camera sample photographs)"),
]

flags.DEFINE_string("checkouts_dir", None, "Folder of owner+name checkouts.")
flags.DEFINE_string("output_dir", "data/extra/train",
                    "One subfolder per source goes here.")
flags.DEFINE_list("reference_dirs", [], "Folders of images no new image may "
                  "copy (other training sets, Kodak, held-out sets).")
flags.DEFINE_list("sources", [], "Names of SOURCES to build (default all).")
flags.DEFINE_integer("min_side", 256, "Smallest shorter side kept.")
flags.DEFINE_float("max_luma_quant_step", 5.0, "Largest mean JPEG luma "
                   "quantization step kept.")
flags.DEFINE_integer("max_pixels", 4_000_000, "Larger images are "
                     "downsampled.")
flags.DEFINE_integer("max_short_side", 1200, "Shorter side of downsampled "
                     "images.")
flags.DEFINE_integer("max_file_bytes", None, "Leave out source files larger "
                     "than this (4194303 reproduces the build from this "
                     "sandbox's snapshots, which lack files of 4 MiB and "
                     "more).")
flags.DEFINE_float("near_duplicate_correlation", 0.95, "Thumbnail "
                   "correlation above which an image counts as a copy.")
flags.mark_flags_as_required(["checkouts_dir"])
FLAGS = flags.FLAGS


def source_files(source, checkout, max_file_bytes=None):
  files = set()
  for pattern in source["include"]:
    files.update(data.expand_patterns(os.path.join(checkout, pattern)))
  return sorted(
      f for f in files
      if not any(fnmatch.fnmatch(os.path.basename(f), p)
                 for p in source["exclude"])
      and (max_file_bytes is None or os.path.getsize(f) <= max_file_bytes))


def seed_index(index, reference_dirs):
  for path in data.expand_patterns(reference_dirs):
    with Image.open(path) as image:
      index.add(np.asarray(image.convert("RGB")), path)


def main(argv):
  del argv
  config = photo_curation.CurationConfig(
      min_side=FLAGS.min_side, max_luma_quant_step=FLAGS.max_luma_quant_step,
      max_pixels=FLAGS.max_pixels, max_short_side=FLAGS.max_short_side,
      near_duplicate_correlation=FLAGS.near_duplicate_correlation)
  index = photo_curation.DuplicateIndex(config.near_duplicate_correlation)
  seed_index(index, FLAGS.reference_dirs)
  print(f"{len(index)} reference images")
  manifest_path = os.path.join(FLAGS.output_dir, "manifest.json")
  manifest = {}
  if os.path.exists(manifest_path):
    with open(manifest_path) as f:
      manifest = json.load(f)
  chosen = [s for s in SOURCES if not FLAGS.sources or
            s["name"] in FLAGS.sources]
  # Sources already built, not rebuilt now, still guard against copies.
  for source in SOURCES:
    folder = os.path.join(FLAGS.output_dir, source["name"])
    if source not in chosen and os.path.isdir(folder):
      seed_index(index, [folder])
  for source in chosen:
    checkout = os.path.join(FLAGS.checkouts_dir,
                            source["repo"].replace("/", "+"))
    folder = os.path.join(FLAGS.output_dir, source["name"])
    if glob.glob(os.path.join(folder, "*")):
      raise FileExistsError(f"{folder} is not empty")
    if not os.path.isdir(checkout):
      raise FileNotFoundError(f"no checkout of {source['repo']} at {checkout}")
    files = source_files(source, checkout, FLAGS.max_file_bytes)
    stats = photo_curation.curate(files, checkout, folder, index, config)
    manifest[source["name"]] = dict(
        repo=source["repo"], commit=source["commit"],
        include=source["include"], licence=source["licence"],
        candidates=len(files), kept=stats["kept"],
        megapixels=round(stats["megapixels"], 1),
        rejected=stats["rejected"], duplicates=stats["duplicates"])
    print(f"{source['name']}: {stats['kept']} of {len(files)} kept, "
          f"{stats['megapixels']:.1f} Mpix, rejected {stats['rejected']}")
  with open(manifest_path, "w") as f:
    json.dump(manifest, f, indent=1)
  total = sum(m["kept"] for m in manifest.values())
  mpix = sum(m["megapixels"] for m in manifest.values())
  print(f"{total} images, {mpix:.0f} Mpix ({3 * mpix / 1e3:.2f} GB "
        f"decoded) in {FLAGS.output_dir}")


if __name__ == "__main__":
  app.run(main)
