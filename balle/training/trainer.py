"""One training run's state and its step (`Trainer`): the model, Adam, the
learning-rate schedule, the weight average, the step counter and the
checkpoints that hold them all, and the warm start from a saved model.

One step minimizes loss = R + lambda * D (`rate_distortion`, paper Sec. 4)
on a batch of patches; a step whose loss or gradient is not finite changes
nothing (`NonFiniteLossError`).

The step runs under the run's tf.distribute strategy
(balle.training.distribute): the weights, Adam's moments and the weight average
have one copy per replica (created in the strategy's scope), each replica
computes the loss on its slice of the batch, and the gradients are all-reduced
before they are checked, clipped and applied, so every replica makes the same
update. Checkpoints hold one copy of each variable and resume under any
strategy.
"""

import os
import shutil

from absl import logging
import numpy as np
import tensorflow as tf

from balle.models import compression_model
from balle.training import distribute
from balle.training.schedules import LearningRate
from balle.training.schedules import WeightAverage


class NonFiniteLossError(RuntimeError):
  """The loss or a gradient became NaN or infinite."""


class DivergedError(RuntimeError):
  """The loss blew up again after --max_rollbacks rollbacks."""


OPTIONAL_CHECKPOINT_PARTS = ("scale", "ema", "loss_scale")
# Dynamic loss scaling of mixed_float16 (float16 gradients underflow below
# ~6e-8 and overflow above 65504): the loss is multiplied by the scale before
# the gradients and they are divided by it after; a step whose gradients
# overflow halves it and is taken again, and LOSS_SCALE_PERIOD finite steps
# in a row double it.
INITIAL_LOSS_SCALE = 2.0 ** 15
LOSS_SCALE_PERIOD = 2000


class Trainer:
  """Model, optimizer, schedule, weight average and checkpoint of a run."""

  def __init__(self, config):
    self.config = config
    self.strategy = distribute.create_strategy(config.strategy,
                                               config.cpu_devices)
    self.is_chief = distribute.is_chief(self.strategy)
    # Seeds Python's `random` too, from which Keras' initializers draw
    # their seeds: with TF's seed alone every process starts elsewhere.
    tf.keras.utils.set_random_seed(config.seed)
    with self.strategy.scope():
      self._create_replicated_state()
    # The run's bookkeeping, read as Python numbers and updated once per
    # step outside the replicas: one copy per worker, outside the scope.
    self.learning_rate = LearningRate(config)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.elapsed_s = tf.Variable(0., dtype=tf.float64, trainable=False)
    self.loss_scaling = config.precision == "mixed_float16"
    self.loss_scale = tf.Variable(
        INITIAL_LOSS_SCALE if self.loss_scaling else 1., trainable=False)
    self.finite_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.checkpoint_parts = dict(
        model=self.model, optimizer=self.optimizer, step=self.step,
        elapsed_s=self.elapsed_s, **self.learning_rate.variables())
    if self.loss_scaling:
      self.checkpoint_parts["loss_scale"] = tf.train.Checkpoint(
          scale=self.loss_scale, finite_steps=self.finite_steps)
    if self.average:
      self.checkpoint_parts["ema"] = tf.train.Checkpoint(
          averages=self.average.averages)
    self.checkpoint = tf.train.Checkpoint(**self.checkpoint_parts)
    self.checkpoint_dir = os.path.join(config.model_dir, "checkpoints")
    self.checkpoint_step = None  # of the checkpoint last saved or restored
    self.manager = tf.train.CheckpointManager(
        self.checkpoint,
        distribute.checkpoint_write_dir(self.strategy, self.checkpoint_dir),
        max_to_keep=config.max_checkpoints)
    self.train_step = tf.function(self._train_step)

  def _create_replicated_state(self):
    """The model, Adam and the weight average: one copy per replica."""
    config = self.config
    self.model = compression_model.model_class(config.model.architecture)(
        config.model, precision=config.precision)
    self.variables = self.model.trainable_variables
    # The optimizer always holds moments for every variable, so checkpoints
    # have one structure whatever is trained (finetune_decoder_rounded).
    self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    self.optimizer.build(self.variables)
    self.trained_variables = (self.model.decoder_variables
                              if config.finetune_decoder_rounded
                              else self.variables)
    prior = {v.ref() for v in self.model.prior_variables}
    self.scaled_variables = (
        [v for v in self.trained_variables if v.ref() in prior]
        if config.prior_lr_scale != 1 else [])
    self.average = (WeightAverage(self.variables, config.ema_decay)
                    if config.ema_decay > 0 else None)

  @property
  def latest_checkpoint(self):
    """The chief's latest checkpoint (every worker resumes from it)."""
    return tf.train.latest_checkpoint(self.checkpoint_dir)

  def restore_or_initialize(self):
    """Resumes from the latest checkpoint, else warm-starts if asked."""
    if self.latest_checkpoint:
      self._restore_latest()
      logging.info("resumed from %s at step %d", self.latest_checkpoint,
                   int(self.step))
    elif self.config.init_from:
      warm_start(self.model, self.config.init_from)
      if self.config.init_latent_scale != 1:
        self.model.rescale_latents(self.config.init_latent_scale)
        logging.info("latents rescaled by %g", self.config.init_latent_scale)
      if self.average:
        self.average.reset()
    if not distribute.same_on_all_workers(self.strategy, int(self.step)):
      raise RuntimeError(
          f"the workers start from different steps (this one from "
          f"{int(self.step)}): every worker must read the chief's "
          f"{self.checkpoint_dir}")

  def _restore_latest(self):
    """Restores the latest checkpoint, which must match this run except for
    OPTIONAL_CHECKPOINT_PARTS: without `scale` (written before rollbacks
    existed) the rate resumes unscaled, without `ema` the average restarts
    at the restored weights, and an `ema` this run does not keep is ignored.
    """
    path = self.latest_checkpoint
    saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    saved -= {"_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"}
    unknown = saved - set(self.checkpoint_parts)
    if unknown - set(OPTIONAL_CHECKPOINT_PARTS):
      raise ValueError(f"{path} holds {sorted(unknown)}, which this run "
                       "does not know")
    parts = {name: part for name, part in self.checkpoint_parts.items()
             if name in saved or name not in OPTIONAL_CHECKPOINT_PARTS}
    status = tf.train.Checkpoint(**parts).restore(path)
    if unknown:
      status.expect_partial()
      status.assert_existing_objects_matched()
      logging.info("ignoring %s in %s", sorted(unknown), path)
    else:
      status.assert_consumed()
    if self.average and "ema" not in saved:
      self.average.reset()
    self.checkpoint_step = int(self.step)

  def _train_step(self, images):
    """One step on `trained_variables`, skipped (no update on any replica)
    if the loss or a gradient is not finite. `images`: the batch as
    `distributed` yields it, or one tensor that every replica then sees
    whole. Returns (bpp, mse_255, loss, finite) of the whole batch.

    The update runs in a second strategy.run under the condition: a
    synchronization (the optimizer's) inside a conditional within a
    replica's function is not supported.
    """
    bpp, mse_255, loss, finite, gradients = self.strategy.run(
        self._gradients, (images,))
    bpp, mse_255, loss, finite = distribute.first_replica(
        self.strategy, (bpp, mse_255, loss, finite))
    if finite:
      self.strategy.run(self._update, (gradients,))
      self.step.assign_add(1)
      if self.loss_scaling:
        self.finite_steps.assign_add(1)
        if self.finite_steps >= LOSS_SCALE_PERIOD:
          self.loss_scale.assign(2 * self.loss_scale)
          self.finite_steps.assign(0)
    elif self.loss_scaling and tf.math.is_finite(loss):
      self.loss_scale.assign(self.loss_scale / 2)
      self.finite_steps.assign(0)
    return bpp, mse_255, loss, finite

  def _gradients(self, images):
    """In each replica: (bpp, mse_255, loss, finite, gradients) of the whole
    batch, all-reduced (the same on every replica), gradients clipped.

    A replica's figures are means over its slice; scaled by 1/R, their sum
    over the R replicas is the mean over the batch, and so is the sum of
    the gradients of its scaled loss.

    finetune_decoder_rounded computes the loss on rounded latents, as at
    coding time (`rate_distortion(training=False)`); only g_s is trained, so
    no gradient has to pass the rounding, and the rate term is constant.
    """
    context = tf.distribute.get_replica_context()
    share = 1 / context.num_replicas_in_sync
    training = not self.config.finetune_decoder_rounded
    with tf.GradientTape() as tape:
      figures = [share * x for x in self.model.rate_distortion(
          images, training=training,
          straight_through=self.config.decoder_latents == "rounded_ste")]
      target = (figures[-1] * self.loss_scale if self.loss_scaling
                else figures[-1])
    gradients = tape.gradient(target, self.trained_variables)
    if self.loss_scaling:
      gradients = [g / self.loss_scale for g in gradients]
    (bpp, mse_255, loss), gradients = context.all_reduce(
        tf.distribute.ReduceOp.SUM, (figures, gradients))
    finite = tf.reduce_all(
        [tf.math.is_finite(loss)] +
        [tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    if self.config.clip_norm > 0:
      gradients, _ = tf.clip_by_global_norm(gradients, self.config.clip_norm)
    return bpp, mse_255, loss, finite, gradients

  def _update(self, gradients):
    """In each replica: Adam on `trained_variables` with the all-reduced
    `gradients`, the prior's rate scale and the average, each replica on its
    own copy of the variables (the same update on each).

    Adam moves a weight by -lr * m^ / (sqrt(v^) + eps) and its moments m, v
    do not depend on lr, so scaling the prior's moves by prior_lr_scale after
    the update is exactly Adam at prior_lr_scale * lr for the prior, with one
    optimizer (and one checkpoint structure) for all variables.
    """
    before = [tf.identity(v) for v in self.scaled_variables]
    self.optimizer.apply_gradients(zip(gradients, self.trained_variables),
                                   skip_gradients_aggregation=True)
    for variable, value in zip(self.scaled_variables, before):
      variable.assign(value + self.config.prior_lr_scale * (variable - value))
    if self.average:
      self.average.update()

  def distributed(self, sampler):
    """The batches of `sampler` (balle.data.PatchSampler or
    balle.data.streaming.PatchStream) split over the replicas
    (`distribute.replica_batches`)."""
    return distribute.replica_batches(
        self.strategy, lambda context: sampler.dataset(input_context=context),
        self.config.batchsize)

  def train_on(self, images):
    """One step on a batch; (bpp, mse_255, loss) as floats. Raises
    NonFiniteLossError, with no update made, on a non-finite loss. Under
    loss scaling, a step whose gradients overflowed (the loss finite) is
    taken again at the halved scale."""
    bpp, mse_255, loss, finite = self.train_step(images)
    while (not finite and self.loss_scaling and np.isfinite(float(loss))
           and float(self.loss_scale) >= 1):
      logging.info("float16 gradients overflowed: loss scale lowered to %g",
                   float(self.loss_scale))
      bpp, mse_255, loss, finite = self.train_step(images)
    if not finite:
      raise NonFiniteLossError(
          f"loss {float(loss)} (bpp {float(bpp)}, MSE {float(mse_255)}) or "
          f"its gradient is not finite at step {int(self.step) + 1}; the "
          f"update was skipped and no checkpoint written, the last good "
          f"checkpoint is {self.latest_checkpoint}. Lower "
          f"--learning_rate or set --clip_norm and rerun to resume from it.")
    return float(bpp), float(mse_255), float(loss)

  def start_schedule(self):
    """Sets the optimizer's rate for the next step of a (new) session."""
    if int(self.step) == 0:
      self.learning_rate.start(1)
    self.optimizer.learning_rate.assign(self.learning_rate.value)

  def advance_schedule(self, step, loss, elapsed_s):
    """Sets the rate of step + 1; False when the plateau schedule is done."""
    keep_going = self.learning_rate.update(step, loss, elapsed_s)
    self.optimizer.learning_rate.assign(self.learning_rate.value)
    return keep_going

  def coding_copy(self):
    """The trained model frozen for coding: the weight average if kept."""
    if self.average is None:
      return self.model.coding_copy()
    with self.average.applied():
      return self.model.coding_copy()

  def roll_back(self, diverged, rollbacks):
    """Restores the last checkpoint and divides the learning rate by 10."""
    c = self.config
    where = (f"the loss blew up at step {diverged.step} ({diverged.loss:.4g} "
             f"against a recent average of {diverged.baseline:.4g})")
    latest = self.latest_checkpoint
    if rollbacks > c.max_rollbacks or not latest:
      why = (f"{c.max_rollbacks} rollbacks did not help" if latest
             else "no checkpoint yet")
      raise DivergedError(
          f"{where}; {why}. Lower --learning_rate (or set --clip_norm) and "
          f"rerun; the last checkpoint is {latest}.")
    scale = float(self.learning_rate.scale) / 10
    self._restore_latest()
    self.learning_rate.scale.assign(scale)
    self.learning_rate.value.assign(self.learning_rate.value / 10)
    logging.warning("%s: rolled back to %s (step %d), learning rate x%g "
                    "from now on (rollback %d of at most %d)", where,
                    latest, int(self.step), scale,
                    rollbacks, c.max_rollbacks)

  def state_variables(self):
    """Every variable a checkpoint keeps that holds weights or moments."""
    averages = self.average.averages if self.average else []
    return self.model.variables + self.optimizer.variables + averages

  def save_checkpoint(self):
    """Writes a checkpoint unless the weights are not finite; returns path.
    Every worker saves; all but the chief into a folder deleted right after
    (`distribute.checkpoint_write_dir`)."""
    if not all_finite(self.state_variables()):
      logging.error("not saving a checkpoint: weights are not finite")
      return None
    path = self.manager.save(checkpoint_number=int(self.step))
    self.checkpoint_step = int(self.step)
    if not self.is_chief:
      shutil.rmtree(self.manager.directory, ignore_errors=True)
    return path

  def has_checkpoint_of_current_step(self):
    """Whether the current step was saved or restored, decided from the
    run's state alone (the same on every worker)."""
    return self.checkpoint_step == int(self.step)


def warm_start(model, directory):
  """Copies the trainable weights (transforms and prior) from a saved model
  of the same architecture (other lambda).

  A source with fewer filters N or latent channels M is embedded in `model`
  by `model.widen_from` (bls2017: same reconstruction, new filters freshly
  initialized, new latents silent; balle.models.widen)."""
  source = compression_model.load_model(directory)
  if source.ARCHITECTURE != model.ARCHITECTURE:
    raise ValueError(f"--init_from model is {source.ARCHITECTURE!r}, this "
                     f"run {model.ARCHITECTURE!r}")
  source_size, size = ((c.num_filters, c.num_latent_channels)
                        for c in (source.config, model.config))
  if source_size != size and all(a <= b for a, b in zip(source_size, size)):
    model.widen_from(source)
    logging.info("warm start from %s (lambda=%g), widened from N %d, M %d "
                 "to N %d, M %d", directory, source.config.lmbda,
                 *source_size, *size)
    return
  if source_size != size:
    raise ValueError(f"--init_from model has N {source_size[0]}, M "
                     f"{source_size[1]}: more than this run's N {size[0]}, "
                     f"M {size[1]} in one of them")
  weights = source.named_weights()
  for name, target in model.named_weights().items():
    target.assign(weights[name])
  logging.info("warm start from %s (lambda=%g)", directory,
               source.config.lmbda)


def all_finite(variables):
  return all(np.all(np.isfinite(v.numpy())) for v in variables)
