"""How a factorized (bls2017) model spends its bits over its latent
channels, for the diagnosis (docs/campaign.md, "Diagnosis"): which channels
carry information and which are idle.

  python -m benchmarks.latent_channels --model=campaign/anchor \
      --images=campaign/yardstick.txt --count=12

For the first --count images (a folder, glob, or a text file listing one
path per line) the latents are rounded and each channel's bits are
-log2 p(round(y)) under the model's learned density (the noisy density at
the rounded value: what the range coder spends, up to the quantization
offsets and the tails). Prints the bits per latent of the channels,
summarized, and the channels carrying more than --threshold bits; with
--first_new=K also the share of the bits in channels K.. (the channels a
widening added: balle.models.widen) and the RMS of old and added latents.
"""

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_string("model", None, "Saved model folder (bls2017).")
flags.DEFINE_multi_string("images", [], "Image folders, globs or lists.")
flags.DEFINE_integer("count", 12, "Images used (the first of the list).")
flags.DEFINE_float("threshold", 0.5, "Bits per latent of a used channel.")
flags.DEFINE_integer("first_new", 0, "First channel added by a widening "
                     "(0: none).")
flags.mark_flags_as_required(["model"])
FLAGS = flags.FLAGS


def channel_bits(model, images):
  """(mean bits per latent, RMS of the latents) of each channel of `model`
  over `images` (uint8 arrays); bits of the rounded latents under the
  learned density."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from balle import data  # pylint: disable=g-import-not-at-top
  bits_sum = squares_sum = 0.0
  count = 0
  for image in images:
    image = data.crop_to_multiple(image, model.downsampling_factor)
    latents = model.analysis(image[None].astype(np.float32) / 255.)
    probability = model.prior.prob(tf.round(latents)).numpy()
    bits = -np.log2(np.maximum(probability, 1e-9))
    channels = bits.shape[-1]
    bits_sum = bits_sum + bits.reshape(-1, channels).sum(0)
    squares_sum = squares_sum + np.square(
        latents.numpy()).reshape(-1, channels).sum(0)
    count += bits[..., 0].size
  return bits_sum / count, np.sqrt(squares_sum / count)


def main(argv):
  del argv
  from balle import data  # pylint: disable=g-import-not-at-top
  from balle.models import compression_model  # pylint: disable=g-import-not-at-top
  model = compression_model.load_model(FLAGS.model)
  if model.ARCHITECTURE != "bls2017":
    raise SystemExit(f"{FLAGS.model} is {model.ARCHITECTURE}: only bls2017 "
                     "models have one learned density per channel")
  files = [path for spec in FLAGS.images
           for path in data.image_files(spec)][:FLAGS.count]
  if not files:
    raise SystemExit("no images: give --images")
  images, _ = data.load_images(files, 0, model.config.channels)
  bits, rms = channel_bits(model, images)
  print(f"{FLAGS.model}: {len(bits)} latent channels, {len(images)} images")
  print(f"bits per latent: mean {bits.mean():.3f}, min {bits.min():.3f}, "
        f"median {np.median(bits):.3f}, max {bits.max():.3f}")
  print(f"channels above {FLAGS.threshold:g} bit: "
        f"{int((bits > FLAGS.threshold).sum())} of {len(bits)}")
  if 0 < FLAGS.first_new < len(bits):
    new = bits[FLAGS.first_new:]
    print(f"channels {FLAGS.first_new}..{len(bits) - 1} (added): "
          f"{new.sum() / bits.sum():.2%} of the bits, mean {new.mean():.4f} "
          f"bit per latent, {int((new > FLAGS.threshold).sum())} of "
          f"{len(new)} above {FLAGS.threshold:g} bit")
    print(f"RMS of the latents: channels 0..{FLAGS.first_new - 1} "
          f"{rms[:FLAGS.first_new].mean():.4f}, added "
          f"{rms[FLAGS.first_new:].mean():.4f} (the quantization step is 1)")


if __name__ == "__main__":
  app.run(main)
