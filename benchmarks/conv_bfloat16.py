"""Forward+backward time of the model's convolutions in float32 vs bfloat16.

  python benchmarks/conv_bfloat16.py [--num_filters=128] [--patchsize=256]

Times, on a batch of 8 patches, (a) the three convolutions of the paper's g_a
(9x9/4, 5x5/2, 5x5/2) as tf.nn.conv2d with "SAME" padding, (b) the three
transposed convolutions of g_s with explicit padding, which is how
tfc.SignalConv2D implements them by default, and (c) the same with "VALID"
padding followed by cropping (SignalConv2D's `use_explicit=False`). Each in
float32 and bfloat16, all
interleaved round-robin, median of --steps after warm-up. On a CPU with
avx512_bf16 this shows why `--precision=mixed_bfloat16` training uses (c).
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

_KINDS = {"g_a": "convolutions, SAME padding",
          "g_s": "transposed convolutions, explicit padding",
          "g_s_valid": "transposed convolutions, VALID padding + crop"}

# (kernel, stride, input channels or None for N); input side = patch / factor.
_STAGES = ((9, 4, 3, 1), (5, 2, None, 4), (5, 2, None, 8))


def convolutions_step(dtype, kind):
  """tf.function: forward+backward of the g_a convolutions (kind "g_a") or of
  the g_s transposed ones with explicit padding ("g_s") or valid padding and
  cropping ("g_s_valid"), in `dtype`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  n, p, b = FLAGS.num_filters, FLAGS.patchsize, FLAGS.batchsize
  inputs, kernels, calls = [], [], []
  for kernel, stride, channels, factor in _STAGES:
    channels = channels or n
    if kind != "g_a":  # latents-side input, image-side output
      side = p // factor // stride
      inputs.append(tf.cast(tf.random.normal((b, side, side, n)), dtype))
      pad = (kernel - 1) // 2
      output_shape = (b, side * stride, side * stride, channels)
      if kind == "g_s":
        calls.append(lambda x, k, s=stride, o=output_shape, q=pad:
                     tf.nn.conv2d_transpose(
                         x, k, o, s, [[0, 0], [q, q - s + 1], [q, q - s + 1],
                                      [0, 0]]))
      else:
        full = (side - 1) * stride + kernel
        calls.append(lambda x, k, s=stride, f=full, c=channels, q=pad,
                     o=side * stride: tf.nn.conv2d_transpose(
                         x, k, (b, f, f, c), s, "VALID")[:, q:q + o, q:q + o])
    else:
      side = p // factor
      inputs.append(tf.cast(tf.random.normal((b, side, side, channels)),
                            dtype))
      calls.append(lambda x, k, s=stride: tf.nn.conv2d(x, k, s, "SAME"))
    kernels.append(tf.Variable(tf.cast(tf.random.normal(
        (kernel, kernel, channels, n)) * 0.01, dtype)))

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = 0.
      for x, k, call in zip(inputs, kernels, calls):
        loss += tf.reduce_sum(tf.square(tf.cast(call(x, k), tf.float32)))
    return tape.gradient(loss, kernels)
  return step


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  steps = {(kind, dtype.name): convolutions_step(dtype, kind)
           for kind in _KINDS for dtype in (tf.float32, tf.bfloat16)}
  for step in steps.values():
    step(), step()
  times = {name: [] for name in steps}
  for _ in range(FLAGS.steps):
    for name, step in steps.items():
      start = time.perf_counter()
      [g.numpy() for g in step()]  # pylint: disable=expression-not-assigned
      times[name].append(time.perf_counter() - start)
  for kind, what in _KINDS.items():
    f32, bf16 = (statistics.median(times[(kind, d)])
                 for d in ("float32", "bfloat16"))
    print(f"{kind} {what}, fwd+bwd, {FLAGS.batchsize}x{FLAGS.patchsize}², "
          f"N={FLAGS.num_filters}: float32 {f32:.3f} s, bfloat16 {bf16:.3f} "
          f"s, bfloat16 speedup x{f32 / bf16:.2f}")


if __name__ == "__main__":
  app.run(main)
