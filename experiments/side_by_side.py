"""One crop of an image decoded by models and classic codecs, side by side.

    python -m experiments.side_by_side --image=kodim23.png \
        --models=bls2017-mse-0.0250,campaign/bmshj2018/anchor \
        --codecs=jpeg420,j2k --crop=x,y,w,h --zoom=2 \
        --output=docs/side_by_side.png

The classic codecs aim at the first model's bpp (or --target_bpp); see
balle.evaluation.comparison_picture. Writes the PNG and prints the figures (of
the whole image) as a Markdown table, with the command that remakes them.
"""

import os

from absl import app, flags

from balle import pretrained
from balle.evaluation import baselines
from balle.evaluation import comparison_picture
from balle.io import image_io
from balle.io import safe_write

flags.DEFINE_string("image", None, "Image to code (RGB or gray).")
flags.DEFINE_list("models", [], "Model folders or shipped model names; the "
                  "first sets the target bpp.")
flags.DEFINE_list("codecs", ["jpeg420", "j2k"],
                  f"Classic codecs, from {sorted(baselines.CODECS_BY_NAME)}.")
flags.DEFINE_list("crop", [], "x,y,w,h of the crop (default: the "
                  f"{comparison_picture.DEFAULT_CROP_SIZE[0]}x"
                  f"{comparison_picture.DEFAULT_CROP_SIZE[1]} window with "
                  "the most detail).")
flags.DEFINE_integer("zoom", 2, "Nearest-neighbour enlargement of the crop.")
flags.DEFINE_float("target_bpp", 0.0, "bpp the classic codecs aim at "
                   "(0: the first model's).")
flags.DEFINE_integer("columns", 0, "Tiles per row (0: ceil(sqrt(tiles))).")
flags.DEFINE_string("output", "docs/side_by_side.png", "PNG to write.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")
flags.mark_flag_as_required("image")
FLAGS = flags.FLAGS


def _command(crop):
  """The command that remakes the figures, crop resolved."""
  parts = ["python -m experiments.side_by_side", f"--image={FLAGS.image}"]
  if FLAGS.models:
    parts.append(f"--models={','.join(FLAGS.models)}")
  parts += [f"--codecs={','.join(FLAGS.codecs)}",
            f"--crop={','.join(str(v) for v in crop)}",
            f"--zoom={FLAGS.zoom}"]
  if FLAGS.target_bpp:
    parts.append(f"--target_bpp={FLAGS.target_bpp:g}")
  if FLAGS.columns:
    parts.append(f"--columns={FLAGS.columns}")
  return " ".join(parts + [f"--output={FLAGS.output}"])


def main(argv):
  del argv
  safe_write.check_writable(FLAGS.output, FLAGS.overwrite)
  codecs = baselines.get_codecs(FLAGS.codecs)
  image = image_io.read_image(FLAGS.image)
  if len(FLAGS.crop) not in (0, 4):
    raise app.UsageError(f"--crop needs x,y,w,h, got {FLAGS.crop}")
  crop = (tuple(int(v) for v in FLAGS.crop) if FLAGS.crop
          else comparison_picture.detailed_crop(image))
  models = [pretrained.resolve(name) for name in FLAGS.models]
  picture, figures = comparison_picture.side_by_side(
      image, models, codecs, crop=crop, zoom=FLAGS.zoom,
      target_bpp=FLAGS.target_bpp or None,
      image_name=os.path.basename(FLAGS.image), columns=FLAGS.columns or None)
  safe_write.write_file_atomic(
      FLAGS.output, lambda f: picture.save(f, format="PNG", optimize=True),
      overwrite=FLAGS.overwrite)
  print(f"Wrote {FLAGS.output} ({picture.width}x{picture.height}); bpp and "
        "PSNR of the whole image.\n")
  print(comparison_picture.markdown_table(figures))
  print(f"\n`{_command(crop)}`")


if __name__ == "__main__":
  app.run(main)
