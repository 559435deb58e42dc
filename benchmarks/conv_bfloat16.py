"""Forward+backward time of the model's convolutions in float32 vs bfloat16.

  python benchmarks/conv_bfloat16.py [--num_filters=128] [--patchsize=256]

Times the three analysis convolutions of the paper's g_a (9x9/4, 5x5/2,
5x5/2; the synthesis transposes cost the same) on a batch of 8 patches, the
two dtypes interleaved round-robin, median of --steps after warm-up. The CPU
has avx512_bf16; this measures whether mixed bfloat16 training would pay
before the model is changed for it (tfc's GDN and entropy models would need
casts; the project trains in float32).
"""

import statistics
import time

from absl import app
from absl import flags

flags.DEFINE_integer("num_filters", 128, "Filters N.")
flags.DEFINE_integer("patchsize", 256, "Patch side in pixels.")
flags.DEFINE_integer("batchsize", 8, "Patches per step.")
flags.DEFINE_integer("steps", 10, "Timed steps (the median is reported).")
FLAGS = flags.FLAGS

# (kernel, stride, input channels or None for N); input side = patch / factor.
_STAGES = ((9, 4, 3, 1), (5, 2, None, 4), (5, 2, None, 8))


def convolutions_step(dtype):
  """tf.function: forward+backward of the three g_a convolutions in `dtype`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  n, p, b = FLAGS.num_filters, FLAGS.patchsize, FLAGS.batchsize
  inputs, kernels = [], []
  for kernel, stride, channels, factor in _STAGES:
    channels = channels or n
    inputs.append(tf.cast(tf.random.normal(
        (b, p // factor, p // factor, channels)), dtype))
    kernels.append(tf.Variable(tf.cast(tf.random.normal(
        (kernel, kernel, channels, n)) * 0.01, dtype)))

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = 0.
      for x, k, (_, stride, _, _) in zip(inputs, kernels, _STAGES):
        y = tf.nn.conv2d(x, k, stride, "SAME")
        loss += tf.reduce_sum(tf.square(tf.cast(y, tf.float32)))
    return tape.gradient(loss, kernels)
  return step


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  steps = {"float32": convolutions_step(tf.float32),
           "bfloat16": convolutions_step(tf.bfloat16)}
  for step in steps.values():
    step(), step()
  times = {name: [] for name in steps}
  for _ in range(FLAGS.steps):
    for name, step in steps.items():
      start = time.perf_counter()
      [g.numpy() for g in step()]  # pylint: disable=expression-not-assigned
      times[name].append(time.perf_counter() - start)
  f32, bf16 = (statistics.median(times[n]) for n in ("float32", "bfloat16"))
  print(f"g_a convolutions fwd+bwd, {FLAGS.batchsize}x{FLAGS.patchsize}², "
        f"N={FLAGS.num_filters}: float32 {f32:.3f} s, bfloat16 {bf16:.3f} s, "
        f"bfloat16 speedup x{f32 / bf16:.2f}")


if __name__ == "__main__":
  app.run(main)
