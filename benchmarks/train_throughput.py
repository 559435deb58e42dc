"""Training throughput (Mpix/s) of the project against tfc's bls2017 recipe.

  python benchmarks/train_throughput.py --train_glob=TRAIN_DIR \
      [--bls2017=PATH/TO/tensorflow_compression/models/bls2017.py]
  python benchmarks/train_throughput.py --profile       # time per component
  python benchmarks/train_throughput.py --ablations     # what each change buys
  python benchmarks/train_throughput.py --num_filters=128 --noend_to_end

Two parts, each timing its candidates interleaved in one process:

1. The training step alone (--num_filters, default N=128 and N=192), on a
   fixed random batch: the project's step (balle.training) in float32 and in
   mixed bfloat16 (`experiments.train --precision`), the same model under
   plain `Model.fit` with default settings, and the naive reference: tfc's
   stock SignalConv2D (kernels inverted from the RDFT by batched FFTs, as
   tfc's models/bls2017.py does) + `Model.fit`. Median of --steps after
   --warmup.
2. --end_to_end: whole training iterations, input pipeline included, on the
   --train_glob images (default: synthetic JPEGs): the project's real
   training loop with the trainer's defaults against the bls2017 recipe
   re-created (stock tfc layers and GDN, float32, Model.fit, each patch
   decoding its image file) and, with --bls2017, tfc's script itself (its
   own model class and input pipeline, imported from the given path).

Mpix/s = batchsize * patchsize^2 / time per step. Thread counts and oneDNN
are set by flags / environment:

  TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/train_throughput.py
"""

import contextlib
import os
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
flags.DEFINE_bool("end_to_end", True, "Also time whole training iterations "
                  "(input pipeline + step) of the project's trainer against "
                  "the bls2017 recipe, on --train_glob images.")
flags.DEFINE_list("train_glob", [], "Training images for --end_to_end (PNG "
                  "and JPEG; default: synthetic 768x512 JPEGs).")
flags.DEFINE_string("bls2017", "", "Path to tensorflow/compression's "
                    "models/bls2017.py: also time that script's own model "
                    "and input pipeline end to end.")
flags.DEFINE_integer("e2e_num_filters", 128, "N for --end_to_end.")
flags.DEFINE_integer("e2e_blocks", 2, "Blocks per candidate, alternated.")
flags.DEFINE_integer("e2e_warmup", 12, "Untimed steps at each block start: "
                     "more than the batches a pipeline buffers while idle.")
flags.DEFINE_integer("e2e_steps", 10, "Timed steps per block.")
flags.DEFINE_bool("ablations", False, "Also time the mixed bfloat16 step "
                  "with tfc's GDN, and without the phase-form convolutions.")
flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF).")
flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF).")
FLAGS = flags.FLAGS


_ABLATIONS = {
    "bf16_tfc_gdn": ("with tfc.GDN instead of balle.models.layers.GDN",
                     dict(convolutions=False, gdn=True)),
    "bf16_no_phase": ("without the phase form of the image-side "
                      "convolutions", dict(convolutions=False, gdn=False,
                                           phase_decomposition=True)),
}


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
  """The trainer's tf.function step (balle/training/trainer.py) and its
  model."""
  from balle.training import config as train_config  # pylint: disable=g-import-not-at-top
  from balle.training import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  trainer = trainer_lib.Trainer(train_config.TrainConfig.create(
      model_dir=tempfile.mkdtemp(), num_filters=num_filters,
      precision=precision))
  step = trainer.train_step
  if FLAGS.jit_compile:
    step = tf.function(trainer._train_step, jit_compile=True)  # pylint: disable=protected-access
  return (lambda: step(images)), trainer.model


@contextlib.contextmanager
def stock_tfc_layers(convolutions=True, gdn=True, phase_decomposition=False):
  """Builds models with tfc's own SignalConv2D (kernels from batched FFTs,
  strided convolutions as such) and GDN (see balle.models.layers.GDN), as tfc's
  models/bls2017.py does, instead of balle's subclasses; or, for ablations,
  with only some of them swapped (`phase_decomposition=True` keeps balle's
  convolutions but not their phase form)."""
  import tensorflow_compression as tfc  # pylint: disable=g-import-not-at-top
  from balle.models import layers  # pylint: disable=g-import-not-at-top
  project_layers = layers.SignalConv2D, layers.GDN
  if convolutions or phase_decomposition:
    layer = tfc.SignalConv2D if convolutions else project_layers[0]
    layers.SignalConv2D = (
        lambda *args, phase_decomposition=False, **kwargs:
        layer(*args, **kwargs))
  if gdn:
    def stock_gdn(form, **kwargs):
      alpha, epsilon = layers.GDN_PARAMETERS[form]
      return tfc.GDN(alpha_parameter=alpha, epsilon_parameter=epsilon,
                     **kwargs)
    layers.GDN = stock_gdn
  try:
    yield
  finally:
    layers.SignalConv2D, layers.GDN = project_layers


def fit_step(num_filters, dataset, stock_tfc=False, gdn_form="paper"):
  """Plain Model.fit with default settings, one step per call.

  The loss is attached with add_loss; each call runs the `train_function`
  that Model.fit runs per step on the next batch of `dataset` (so it can be
  interleaved with ours). With `stock_tfc`, the model uses tfc's stock
  convolution and GDN layers: the naive reference, i.e. what tfc's
  models/bls2017.py does (stock layers, Model.fit; bls2017.py also uses
  tfc's default, "simplified", GDN).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from balle.models.bls2017 import FactorizedPriorModel  # pylint: disable=g-import-not-at-top

  class FitModel(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.inner = FactorizedPriorModel(num_filters=num_filters,
                                        gdn_form=gdn_form)

    def call(self, x, training=False):
      _, _, loss = self.inner.rate_distortion(x, training=True)
      self.add_loss(loss)
      return loss

  with stock_tfc_layers() if stock_tfc else contextlib.nullcontext():
    model = FitModel()
    model(tf.zeros((1, 16, 16, 3)))  # Builds the layers inside the context.
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-4))
  # Built eagerly: Keras cannot create the Adam slots of tfc's GDN variables
  # inside fit's tf.function (AttributeError: Tensor.op is undefined).
  model.optimizer.build(model.trainable_variables)
  train_function = model.make_train_function()
  iterator = iter(dataset)
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


def synthetic_training_images(directory, count=48):
  """`count` smooth random 768x512 JPEGs (q90, like photos) in `directory`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  files = []
  for i in range(count):
    coarse = rng.uniform(0, 255, (9, 13, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((768, 512),
                                                      Image.BICUBIC))
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255)
    files.append(os.path.join(directory, f"synthetic_{i:02d}.jpg"))
    Image.fromarray(image.astype(np.uint8)).save(files[-1], quality=90)
  return files


def per_file_decode_dataset(files, patchsize, batchsize):
  """The input pipeline of tfc's models/bls2017.py, re-created: every patch
  reads and decodes a whole image file, then crops it (16 parallel calls,
  8 batches prefetched)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def patch(filename):
    image = tf.image.decode_image(tf.io.read_file(filename), channels=3,
                                  expand_animations=False)
    return tf.cast(tf.image.random_crop(image, (patchsize, patchsize, 3)),
                   tf.float32)

  dataset = tf.data.Dataset.from_tensor_slices(files)
  dataset = dataset.shuffle(len(files), reshuffle_each_iteration=True)
  dataset = dataset.repeat().map(patch, num_parallel_calls=16)
  return dataset.batch(batchsize, drop_remainder=True).prefetch(8)


def tfc_bls2017_step(path, files, num_filters, patchsize, batchsize):
  """One training iteration of tfc's models/bls2017.py, from the script.

  Imports the script at `path` and builds what its `train` builds: its
  BLS2017Model, Adam 1e-4, its custom-glob pipeline (+ prefetch(8)); each
  call runs the step function its Model.fit runs. Two changes make the
  script run with TF 2.14.1 / tfc 2.14.1 at all (as is, it fails before its
  first step): the model and Adam's slots are built eagerly (see below and
  `fit_step`). The pipeline gets a directory of links to `files` as its
  glob. tensorflow_datasets, imported
  by the script but unused with a glob, is stubbed if not installed.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("tensorflow_datasets") is None:
    sys.modules["tensorflow_datasets"] = types.ModuleType("tensorflow_datasets")
  spec = importlib.util.spec_from_file_location("tfc_bls2017", path)
  bls2017 = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bls2017)
  links = tempfile.mkdtemp()
  for i, name in enumerate(files):
    os.symlink(os.path.abspath(name), os.path.join(
        links, f"{i:05d}{os.path.splitext(name)[1]}"))
  args = types.SimpleNamespace(
      train_glob=os.path.join(links, "*"), patchsize=patchsize,
      batchsize=batchsize, preprocess_threads=16)

  class BLS2017Model(bls2017.BLS2017Model):

    def build(self, input_shape):
      # The script's constructor calls build((None, None, None, 3)); Keras
      # 2.14 then traces `call` in a graph, where tfc 2.14.1's RDFT kernel
      # variables cannot be created ("could not be lifted out of a
      # tf.function"). Build eagerly on a small image instead.
      del input_shape
      self.call(tf.zeros((1, 16, 16, 3)), training=False)
      self.built = True

  model = BLS2017Model(0.013, num_filters)
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=1e-4))
  model.optimizer.build(model.trainable_variables)  # As in fit_step.
  iterator = iter(bls2017.get_custom_dataset("train", args).prefetch(8))
  train_function = model.make_train_function()
  return lambda: train_function(iterator)


def end_to_end(files):
  """Seconds per training iteration, input pipeline included.

  The project runs its real loop (`balle.training.train`, the trainer's
  defaults, images decoded once into memory); after each of its blocks the
  references run a block each. Blocks start with --e2e_warmup untimed steps,
  so the batches a pipeline prefetched while idle do not count. Returns
  {name: mean s per step}, the trainer's precision and the time to its
  first step (decoding the images, tracing).
  """
  from balle import training  # pylint: disable=g-import-not-at-top
  from balle.training import config as train_config  # pylint: disable=g-import-not-at-top
  n, p, b = FLAGS.e2e_num_filters, FLAGS.patchsize, FLAGS.batchsize
  references = {"bls2017_style": fit_step(
      n, per_file_decode_dataset(files, p, b), stock_tfc=True,
      gdn_form="simplified")}
  if FLAGS.bls2017:
    references["bls2017_script"] = tfc_bls2017_step(FLAGS.bls2017, files, n,
                                                     p, b)
  block = FLAGS.e2e_warmup + FLAGS.e2e_steps
  times_s = {name: [] for name in ["project"] + list(references)}
  start = time.perf_counter()
  clock = {"last": start, "steps": 0}

  def on_step(trainer):
    del trainer
    now = time.perf_counter()
    if not clock["steps"]:
      clock["first_step_s"] = now - start
    if clock["steps"] % block >= FLAGS.e2e_warmup:
      times_s["project"].append(now - clock["last"])
    clock["steps"] += 1
    if clock["steps"] % block == 0:
      for name, step in references.items():
        for i in range(block):
          step_start = time.perf_counter()
          _sync(step())
          if i >= FLAGS.e2e_warmup:
            times_s[name].append(time.perf_counter() - step_start)
    clock["last"] = time.perf_counter()

  config = train_config.TrainConfig.create(
      model_dir=tempfile.mkdtemp(), train_glob=tuple(files), num_filters=n,
      patchsize=p, batchsize=b, max_steps=FLAGS.e2e_blocks * block,
      num_validation=0, log_every=10 ** 9, checkpoint_every=10 ** 9)
  training.train(config, on_step=on_step)
  means = {name: statistics.mean(t) for name, t in times_s.items()}
  return means, config.precision, clock["first_step_s"]


def report_end_to_end():
  """Prints the --end_to_end comparison."""
  from balle import data  # pylint: disable=g-import-not-at-top
  files = data.expand_patterns(FLAGS.train_glob)
  source = f"{len(files)} images from --train_glob"
  if not files:
    files = synthetic_training_images(tempfile.mkdtemp())
    source = f"{len(files)} synthetic 768x512 JPEGs"
  means, precision, first_step_s = end_to_end(files)
  mpix = FLAGS.batchsize * FLAGS.patchsize ** 2 / 1e6
  print(f"end to end, input pipeline included ({source}; N="
        f"{FLAGS.e2e_num_filters}, {FLAGS.batchsize}x{FLAGS.patchsize}², "
        f"mean of {FLAGS.e2e_blocks}x{FLAGS.e2e_steps} steps, each block "
        f"after {FLAGS.e2e_warmup} untimed):", flush=True)
  project_s = means["project"]
  for name, what in (
      ("project", f"project trainer (balle.training.train, defaults: "
                  f"{precision}, images decoded once: first step after "
                  f"{first_step_s:.0f} s)"),
      ("bls2017_style", "bls2017 recipe re-created (stock tfc layers and "
                        "GDN, float32, Model.fit, every patch decodes its "
                        "file)"),
      ("bls2017_script", f"tfc's models/bls2017.py itself ({FLAGS.bls2017})")):
    if name in means:
      print(f"  {what}: {means[name]:.3f} s/step = "
            f"{mpix / means[name]:.3f} Mpix/s, project x"
            f"{means[name] / project_s:.2f}", flush=True)


def main(argv):
  del argv
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
      batches = tf.data.Dataset.from_tensors(images).repeat()
      steps["fit"] = fit_step(num_filters, batches)
      steps["stock_fit"] = fit_step(num_filters, batches, stock_tfc=True)
    if FLAGS.profile:
      steps.update(profile_steps(model, images))
    if FLAGS.ablations:
      for name, swap in _ABLATIONS.items():
        with stock_tfc_layers(**swap[1]):
          steps[name] = project_step(num_filters, images, "mixed_bfloat16")[0]
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
    if FLAGS.ablations:
      for name, (what, _) in _ABLATIONS.items():
        print(f"N={num_filters}: mixed bfloat16 step {what}: "
              f"{median_s[name]:.3f} s = x"
              f"{median_s[name] / median_s['project_bf16']:.2f} the "
              f"project's step time", flush=True)
    if FLAGS.profile:
      print(f"N={num_filters}: forward+backward g_a+g_s (with noise, MSE) "
            f"{median_s['transforms']:.3f} s, entropy model (bits) "
            f"{median_s['entropy_model']:.3f} s, whole float32 step "
            f"{median_s['project']:.3f} s",
            flush=True)
  if FLAGS.end_to_end:
    report_end_to_end()


if __name__ == "__main__":
  app.run(main)
