"""Training throughput (Mpix/s) of the project's train step vs. Model.fit.

The project's step is timed twice: in float32 and with the transforms in
mixed bfloat16 (`experiments.train --precision=mixed_bfloat16`).

  python benchmarks/train_throughput.py                 # N=128 and N=192
  python benchmarks/train_throughput.py --num_filters=128 --patchsize=128
  python benchmarks/train_throughput.py --profile       # time per component

Mpix/s = batchsize * patchsize^2 / median step time, over --steps steps after
--warmup steps, on a fixed random batch (the input pipeline runs in parallel
with the step in training and is not measured). Two references are
measured in the same process, their steps interleaved with ours: the same
model trained by plain `Model.fit` with default settings, and the naive
reference, which also uses tfc's stock SignalConv2D (kernels inverted from
the RDFT by batched FFTs, as tfc's models/bls2017.py does) instead of
balle.transforms' matmul version. Thread counts and oneDNN are
set by flags / environment:

  TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/train_throughput.py
"""

import contextlib
import statistics
import tempfile
import time

from absl import app
from absl import flags

flags.DEFINE_list("num_filters", ["128", "192"], "Filter counts N to time.")
flags.DEFINE_integer("patchsize", 256, "Patch side in pixels.")
flags.DEFINE_integer("batchsize", 8, "Patches per step.")
flags.DEFINE_integer("warmup", 3, "Untimed steps (tracing, allocation).")
flags.DEFINE_integer("steps", 10, "Timed steps (the median is reported).")
flags.DEFINE_bool("reference", True, "Also time plain Model.fit.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the project's step.")
flags.DEFINE_bool("profile", False, "Also time forward+backward of g_a+g_s "
                  "alone, and the entropy model alone.")
flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF).")
flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF).")
FLAGS = flags.FLAGS


def _sync(result):
  """Waits for a step: reads its scalar results back to Python."""
  if isinstance(result, dict):
    result = list(result.values())
  for value in (result if isinstance(result, (tuple, list)) else [result]):
    float(value)


def interleaved_median_s(steps):
  """Median time per call of each callable, calls interleaved round-robin.

  Interleaving makes background load (other processes on the machine) hit
  all candidates alike, so their ratio stays fair when absolute times drift.
  """
  for step in steps.values():
    for _ in range(FLAGS.warmup):
      _sync(step())
  times_s = {name: [] for name in steps}
  for _ in range(FLAGS.steps):
    for name, step in steps.items():
      start = time.perf_counter()
      _sync(step())
      times_s[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times_s.items()}


def project_step(num_filters, images, precision="float32"):
  """The trainer's tf.function step (balle/training.py) and its model."""
  from balle import training  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  trainer = training.Trainer(training.TrainConfig(
      model_dir=tempfile.mkdtemp(), num_filters=num_filters,
      precision=precision))
  step = trainer.train_step
  if FLAGS.jit_compile:
    step = tf.function(trainer._train_step, jit_compile=True)  # pylint: disable=protected-access
  return (lambda: step(images)), trainer.model


@contextlib.contextmanager
def stock_tfc_convolutions():
  """Builds models with tfc's own SignalConv2D (kernels from batched FFTs, as
  in tfc's models/bls2017.py) instead of balle's matmul-RDFT subclass."""
  import tensorflow_compression as tfc  # pylint: disable=g-import-not-at-top
  from balle import transforms  # pylint: disable=g-import-not-at-top
  project_layer = transforms.SignalConv2D
  transforms.SignalConv2D = tfc.SignalConv2D
  try:
    yield
  finally:
    transforms.SignalConv2D = project_layer


def fit_step(num_filters, images, stock_tfc=False):
  """Plain Model.fit with default settings, one step per call.

  The loss is attached with add_loss; each call runs the `train_function`
  that Model.fit runs per step (so it can be interleaved with ours). With
  `stock_tfc`, the model uses tfc's stock convolution layers: the naive
  reference, i.e. what tfc's models/bls2017.py does (stock layers, Model.fit).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from balle.model import FactorizedPriorModel  # pylint: disable=g-import-not-at-top

  class FitModel(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.inner = FactorizedPriorModel(num_filters=num_filters)

    def call(self, x, training=False):
      _, _, loss = self.inner.rate_distortion(x, training=True)
      self.add_loss(loss)
      return loss

  with stock_tfc_convolutions() if stock_tfc else contextlib.nullcontext():
    model = FitModel()
    model(images[:1])  # Builds the layers inside the context.
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-4))
  # Built eagerly: Keras cannot create the Adam slots of tfc's GDN variables
  # inside fit's tf.function (AttributeError: Tensor.op is undefined).
  model.optimizer.build(model.trainable_variables)
  train_function = model.make_train_function()
  iterator = iter(tf.data.Dataset.from_tensors(images).repeat())
  return lambda: train_function(iterator)


def profile_steps(model, images):
  """Forward+backward of the transforms alone and of the prior alone."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_compression as tfc  # pylint: disable=g-import-not-at-top
  transform_variables = (model.analysis.trainable_variables +
                         model.synthesis.trainable_variables)

  @tf.function
  def transforms_only(x):
    with tf.GradientTape() as tape:
      y = model.analysis(x / 255.)
      y = y + tf.random.uniform(tf.shape(y), -.5, .5)
      loss = tf.reduce_mean(tf.square(model.synthesis(y) * 255. - x))
    gradients = tape.gradient(loss, transform_variables)
    return tf.add_n([tf.reduce_sum(g) for g in gradients])

  latents = model.analysis(images / 255.)

  @tf.function
  def entropy_model_only(y):
    with tf.GradientTape() as tape:
      tape.watch(y)
      entropy_model = tfc.ContinuousBatchedEntropyModel(
          model.prior, coding_rank=3, compression=False)
      _, bits = entropy_model(y, training=True)
      loss = tf.reduce_sum(bits)
    gradients = tape.gradient(loss, [y] + list(model.prior.trainable_variables))
    return gradients[0][0, 0, 0, 0]

  return {"transforms": lambda: transforms_only(images),
          "entropy_model": lambda: entropy_model_only(latents)}


def main(argv):
  del argv
  import os  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  b, p = FLAGS.batchsize, FLAGS.patchsize
  images = tf.random.stateless_uniform([b, p, p, 3], (1, 2), 0, 255.)
  mpix = b * p * p / 1e6
  print(f"batch {b}x{p}x{p}, median of {FLAGS.steps} steps after "
        f"{FLAGS.warmup}; threads intra={FLAGS.intra_op_threads} "
        f"inter={FLAGS.inter_op_threads}; TF_ENABLE_ONEDNN_OPTS="
        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)')}; "
        f"jit_compile={FLAGS.jit_compile}", flush=True)
  for num_filters in (int(n) for n in FLAGS.num_filters):
    step, model = project_step(num_filters, images)
    steps = {"project": step,
             "project_bf16": project_step(num_filters, images,
                                          "mixed_bfloat16")[0]}
    if FLAGS.reference:
      steps["fit"] = fit_step(num_filters, images)
      steps["stock_fit"] = fit_step(num_filters, images, stock_tfc=True)
    if FLAGS.profile:
      steps.update(profile_steps(model, images))
    median_s = interleaved_median_s(steps)
    for name, what in (("project", "project step, float32"),
                       ("project_bf16", "project step, mixed bfloat16")):
      step_s = median_s[name]
      line = (f"N={num_filters}: {what} {step_s:.3f} s = "
              f"{mpix / step_s:.3f} Mpix/s")
      if FLAGS.reference:
        line += (f" (x{median_s['stock_fit'] / step_s:.2f} the naive "
                 f"reference, x{median_s['fit'] / step_s:.2f} Model.fit)")
      print(line, flush=True)
    if FLAGS.reference:
      for name, what in (("fit", "same model, plain Model.fit"),
                         ("stock_fit", "naive reference, stock tfc layers + "
                          "Model.fit")):
        print(f"N={num_filters}: {what} {median_s[name]:.3f} s = "
              f"{mpix / median_s[name]:.3f} Mpix/s", flush=True)
    if FLAGS.profile:
      print(f"N={num_filters}: forward+backward g_a+g_s (with noise, MSE) "
            f"{median_s['transforms']:.3f} s, entropy model (bits) "
            f"{median_s['entropy_model']:.3f} s, whole float32 step "
            f"{median_s['project']:.3f} s",
            flush=True)


if __name__ == "__main__":
  app.run(main)
