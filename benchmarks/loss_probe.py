"""What a trained model's training loss is made of, for the diagnosis
(docs/campaign.md, "Diagnosis"): the same weights on the same patches,
evaluated four ways, so that no training is needed to see whether

- mixed bfloat16 arithmetic (the trainer's default on CPUs that have it)
  measures a different loss than float32 (a distortion floor the weights
  cannot train below), and
- the noisy latents of training (y + u) predict the rounded latents of
  coding (the proxy's gap).

  python -m benchmarks.loss_probe --model=campaign/anchor \
      --images=../shared/data/train --images=data/imagenet/train

Prints bpp, MSE (0..255) and loss = bpp + lambda MSE per arithmetic and
latents, means over --batches batches of 8 patches of 256^2 drawn with a
fixed seed (every file listed, every --stride'th used), and the ratios of
the bfloat16 and rounded figures to float32 noisy ones.
"""

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_string("model", None, "Saved model folder (bls2017).")
flags.DEFINE_multi_string("images", [], "Image folders or globs.")
flags.DEFINE_integer("stride", 20, "Use every stride'th image file.")
flags.DEFINE_integer("batches", 8, "Batches of 8 patches of 256^2.")
flags.DEFINE_integer("seed", 7, "Patch seed.")
flags.mark_flags_as_required(["model"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from balle import data  # pylint: disable=g-import-not-at-top
  from balle.models import compression_model  # pylint: disable=g-import-not-at-top
  files = data.expand_patterns(FLAGS.images)[::FLAGS.stride]
  images, _ = data.load_images(files, 256)
  sampler = data.PatchSampler(images, 256, 8, seed=FLAGS.seed)
  batches = [sampler.batch().astype(np.float32)
             for _ in range(FLAGS.batches)]
  source = compression_model.load_model(FLAGS.model)
  weights = {v.name: v for v in source.trainable_variables}
  figures = {}
  for precision in ("float32", "mixed_bfloat16"):
    model = type(source)(source.config, precision=precision)
    for variable in model.trainable_variables:
      variable.assign(weights[variable.name])
    for training in (True, False):
      tf.random.set_seed(FLAGS.seed)  # the same noise for both arithmetics
      values = np.mean([[float(t) for t in
                         model.rate_distortion(batch, training=training)]
                        for batch in batches], axis=0)
      figures[precision, training] = values
  print(f"{FLAGS.model} (lambda {source.config.lmbda:g}), {len(images)} "
        f"images, {FLAGS.batches} x 8 patches of 256^2")
  print("| arithmetic | latents | bpp | MSE | loss | loss / float32 noisy |")
  print("|---|---|---:|---:|---:|---:|")
  reference = figures["float32", True][2]
  for (precision, training), (bpp, mse, loss) in figures.items():
    print(f"| {precision} | {'noisy' if training else 'rounded'} | "
          f"{bpp:.4f} | {mse:.3f} | {loss:.4f} | {loss / reference:.4f} |")


if __name__ == "__main__":
  app.run(main)
