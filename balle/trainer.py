"""One training run's state and its step (`Trainer`): the model, Adam, the
learning-rate schedule, the weight average, the step counter and the
checkpoints that hold them all, and the warm start from a saved model.

One step minimizes loss = R + lambda * D (`rate_distortion`, paper Sec. 4)
on a batch of patches; a step whose loss or gradient is not finite changes
nothing (`NonFiniteLossError`).
"""

import os

from absl import logging
import numpy as np
import tensorflow as tf

from balle import compression_model
from balle import widen
from balle.schedules import LearningRate
from balle.schedules import WeightAverage


class NonFiniteLossError(RuntimeError):
  """The loss or a gradient became NaN or infinite."""


class DivergedError(RuntimeError):
  """The loss blew up again after --max_rollbacks rollbacks."""


OPTIONAL_CHECKPOINT_PARTS = ("scale", "ema")


class Trainer:
  """Model, optimizer, schedule, weight average and checkpoint of a run."""

  def __init__(self, config):
    self.config = config
    tf.random.set_seed(config.seed)
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
    self.learning_rate = LearningRate(config)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.elapsed_s = tf.Variable(0., dtype=tf.float64, trainable=False)
    self.average = (WeightAverage(self.variables, config.ema_decay)
                    if config.ema_decay > 0 else None)
    self.checkpoint_parts = dict(
        model=self.model, optimizer=self.optimizer, step=self.step,
        elapsed_s=self.elapsed_s, **self.learning_rate.variables())
    if self.average:
      self.checkpoint_parts["ema"] = tf.train.Checkpoint(
          averages=self.average.averages)
    self.checkpoint = tf.train.Checkpoint(**self.checkpoint_parts)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(config.model_dir, "checkpoints"),
        max_to_keep=config.max_checkpoints)
    self.train_step = tf.function(self._train_step)

  def restore_or_initialize(self):
    """Resumes from the latest checkpoint, else warm-starts if asked."""
    if self.manager.latest_checkpoint:
      self._restore_latest()
      logging.info("resumed from %s at step %d",
                   self.manager.latest_checkpoint, int(self.step))
    elif self.config.init_from:
      warm_start(self.model, self.config.init_from)
      if self.config.init_latent_scale != 1:
        widen.rescale_latents(self.model, self.config.init_latent_scale)
        logging.info("latents rescaled by %g", self.config.init_latent_scale)
      if self.average:
        self.average.reset()

  def _restore_latest(self):
    """Restores the latest checkpoint, which must match this run except for
    OPTIONAL_CHECKPOINT_PARTS: without `scale` (written before rollbacks
    existed) the rate resumes unscaled, without `ema` the average restarts
    at the restored weights, and an `ema` this run does not keep is ignored.
    """
    path = self.manager.latest_checkpoint
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

  def _train_step(self, images):
    """One step on `trained_variables`; skipped (no update) if the loss or a
    gradient is not finite. Returns (bpp, mse_255, loss, finite).

    finetune_decoder_rounded computes the loss on rounded latents, as at
    coding time (`rate_distortion(training=False)`); only g_s is trained, so
    no gradient has to pass the rounding, and the rate term is constant.
    """
    training = not self.config.finetune_decoder_rounded
    with tf.GradientTape() as tape:
      bpp, mse_255, loss = self.model.rate_distortion(
          images, training=training,
          straight_through=self.config.decoder_latents == "rounded_ste")
    gradients = tape.gradient(loss, self.trained_variables)
    finite = tf.reduce_all(
        [tf.math.is_finite(loss)] +
        [tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    if self.config.clip_norm > 0:
      gradients, _ = tf.clip_by_global_norm(gradients, self.config.clip_norm)
    if finite:
      self._update(gradients)
      self.step.assign_add(1)
    return bpp, mse_255, loss, finite

  def _update(self, gradients):
    """Adam on `trained_variables`, the prior's rate scale, the average.

    Adam moves a weight by -lr * m^ / (sqrt(v^) + eps) and its moments m, v
    do not depend on lr, so scaling the prior's moves by prior_lr_scale after
    the update is exactly Adam at prior_lr_scale * lr for the prior, with one
    optimizer (and one checkpoint structure) for all variables.
    """
    before = [tf.identity(v) for v in self.scaled_variables]
    self.optimizer.apply_gradients(zip(gradients, self.trained_variables))
    for variable, value in zip(self.scaled_variables, before):
      variable.assign(value + self.config.prior_lr_scale * (variable - value))
    if self.average:
      self.average.update()

  def train_on(self, images):
    """One step on a batch; (bpp, mse_255, loss) as floats. Raises
    NonFiniteLossError, with no update made, on a non-finite loss."""
    bpp, mse_255, loss, finite = self.train_step(images)
    if not finite:
      raise NonFiniteLossError(
          f"loss {float(loss)} (bpp {float(bpp)}, MSE {float(mse_255)}) or "
          f"its gradient is not finite at step {int(self.step) + 1}; the "
          f"update was skipped and no checkpoint written, the last good "
          f"checkpoint is {self.manager.latest_checkpoint}. Lower "
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
    if rollbacks > c.max_rollbacks or not self.manager.latest_checkpoint:
      why = (f"{c.max_rollbacks} rollbacks did not help"
             if self.manager.latest_checkpoint else "no checkpoint yet")
      raise DivergedError(
          f"{where}; {why}. Lower --learning_rate (or set --clip_norm) and "
          f"rerun; the last checkpoint is {self.manager.latest_checkpoint}.")
    scale = float(self.learning_rate.scale) / 10
    self._restore_latest()
    self.learning_rate.scale.assign(scale)
    self.learning_rate.value.assign(self.learning_rate.value / 10)
    logging.warning("%s: rolled back to %s (step %d), learning rate x%g "
                    "from now on (rollback %d of at most %d)", where,
                    self.manager.latest_checkpoint, int(self.step), scale,
                    rollbacks, c.max_rollbacks)

  def state_variables(self):
    """Every variable a checkpoint keeps that holds weights or moments."""
    averages = self.average.averages if self.average else []
    return self.model.variables + self.optimizer.variables + averages

  def save_checkpoint(self):
    """Writes a checkpoint unless the weights are not finite; returns path."""
    if not all_finite(self.state_variables()):
      logging.error("not saving a checkpoint: weights are not finite")
      return None
    return self.manager.save(checkpoint_number=int(self.step))

  def has_checkpoint_of_current_step(self):
    return self.manager.latest_checkpoint == os.path.join(
        self.manager.directory, f"ckpt-{int(self.step)}")


def warm_start(model, directory):
  """Copies the trainable weights (transforms and prior) from a saved model
  of the same architecture (other lambda).

  A bls2017 source with fewer filters is embedded in `model` by balle.widen
  (same reconstruction, new channels freshly initialized)."""
  source = compression_model.load_model(directory)
  if source.ARCHITECTURE != model.ARCHITECTURE:
    raise ValueError(f"--init_from model is {source.ARCHITECTURE!r}, this "
                     f"run {model.ARCHITECTURE!r}")
  if source.config.num_filters < model.config.num_filters:
    widen.widen(source, model)
    logging.info("warm start from %s (lambda=%g), widened from %d to %d "
                 "filters", directory, source.config.lmbda,
                 source.config.num_filters, model.config.num_filters)
    return
  if source.config.num_filters != model.config.num_filters:
    raise ValueError(f"--init_from model has num_filters="
                     f"{source.config.num_filters}, more than this run's "
                     f"{model.config.num_filters}")
  weights = source.named_weights()
  for name, target in model.named_weights().items():
    target.assign(weights[name])
  logging.info("warm start from %s (lambda=%g)", directory,
               source.config.lmbda)


def all_finite(variables):
  return all(np.all(np.isfinite(v.numpy())) for v in variables)
