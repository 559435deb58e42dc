"""Training loop for the factorized-prior model (Ballé et al., ICLR 2017).

Minimizes loss = R + lambda * D (see balle/model.py) with Adam on random
patches (paper, Sec. 4). The paper divides the learning rate by 10 whenever
the loss stops improving; `lr_schedule="plateau"` does that, "steps" uses a
fixed piecewise-constant schedule, "constant" neither.

Everything needed to continue a run (weights, Adam moments, step, schedule
state, elapsed time) is in a tf.train.Checkpoint in `model_dir`, written every
`checkpoint_every` steps and on exit (also on SIGTERM/Ctrl-C); rerunning the
same command resumes from the latest one. A non-finite loss or gradient stops
the run without updating the weights and without writing a checkpoint, so the
last good checkpoint stays the latest one.

Training ends at `max_steps`, or when the training wall time (summed over
resumed sessions) reaches `max_time_s` if that is > 0, or when the plateau
schedule runs out of learning rates. Then the model is frozen for coding (CDF tables) and
saved to `final_dir` (default `<model_dir>/final`) with a `recipe.json`.
Rerunning a finished run only (re)does this final step; `finalize_only`
does it from the latest checkpoint of an unfinished run.
"""

import dataclasses
import json
import math
import os
import signal
import time

from absl import logging
import numpy as np
import tensorflow as tf

from balle import data
from balle.model import FactorizedPriorModel
from balle.model import ModelConfig

LR_SCHEDULES = ("constant", "steps", "plateau")
RECIPE_FILE = "recipe.json"


@dataclasses.dataclass
class TrainConfig:
  """Flags of a training run (see experiments/train.py for their help)."""
  model_dir: str
  train_glob: tuple = ()
  lmbda: float = 0.0130
  num_filters: int = 128
  channels: int = 3
  gdn_form: str = "paper"
  patchsize: int = 128
  batchsize: int = 8
  max_steps: int = 100_000
  max_time_s: float = 0.0
  learning_rate: float = 1e-3
  lr_warmup_steps: int = 200
  lr_schedule: str = "steps"
  lr_boundaries: tuple = (0.8,)
  lr_values: tuple = (1e-4,)
  plateau_window: int = 1000
  plateau_patience: int = 3
  plateau_min_improvement: float = 0.005
  plateau_min_lr: float = 1e-6
  clip_norm: float = 0.0
  divergence_factor: float = 10.0
  max_rollbacks: int = 3
  precision: str = "auto"
  init_from: str = ""
  seed: int = 0
  log_every: int = 100
  checkpoint_every: int = 500
  validate_every: int = 2000
  num_validation: int = 6
  max_checkpoints: int = 3
  final_dir: str = ""

  def __post_init__(self):
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}")
    if self.lr_schedule == "steps":
      if len(self.lr_boundaries) != len(self.lr_values):
        raise ValueError("lr_boundaries and lr_values need the same length")
      if list(self.lr_boundaries) != sorted(self.lr_boundaries):
        raise ValueError("lr_boundaries must be increasing")
    if not self.final_dir:
      self.final_dir = os.path.join(self.model_dir, "final")
    self.precision = resolve_precision(self.precision)

  def model_config(self):
    return ModelConfig(lmbda=self.lmbda, channels=self.channels,
                       num_filters=self.num_filters, gdn_form=self.gdn_form)


def resolve_precision(precision):
  """"auto" -> "mixed_bfloat16" on a CPU-only machine whose CPU has native
  bfloat16 instructions (avx512_bf16 or amx_bf16 in /proc/cpuinfo), else
  "float32". Other values pass through."""
  if precision != "auto":
    return precision
  if tf.config.list_physical_devices("GPU"):
    return "float32"
  try:
    with open("/proc/cpuinfo") as f:
      flags = f.read()
  except OSError:
    return "float32"
  return ("mixed_bfloat16" if " avx512_bf16" in flags or " amx_bf16" in flags
          else "float32")


class NonFiniteLossError(RuntimeError):
  """The loss or a gradient became NaN or infinite."""


class DivergedError(RuntimeError):
  """The loss blew up again after --max_rollbacks rollbacks."""


class _Diverged(Exception):
  """Raised in the loop when DivergenceGuard fires; train() rolls back."""

  def __init__(self, step, loss, baseline):
    super().__init__(step, loss, baseline)
    self.step, self.loss, self.baseline = step, loss, baseline


class DivergenceGuard:
  """Detects a loss that blew up without becoming NaN.

  At a high learning rate the expansive IGDN of g_s can run away: the loss
  jumps by orders of magnitude (here from 2.4 to 3e4 within 500 steps at
  step ~7.2k of a 1e-3 run) and does not come back. A step is suspect when
  its loss exceeds `factor` times an exponential moving average of the
  losses of non-suspect steps; `patience` suspect steps in a row mean the
  run diverged. factor <= 0 disables the guard.
  """

  def __init__(self, factor, patience=20, decay=0.98):
    self.factor, self.patience, self.decay = factor, patience, decay
    self.average = None
    self.suspect_steps = 0

  @property
  def suspect(self):
    return self.suspect_steps > 0

  def diverged(self, loss):
    """Accounts one step's loss; True once the run has diverged."""
    if self.factor <= 0:
      return False
    if self.average is not None and loss > self.factor * self.average:
      self.suspect_steps += 1
      return self.suspect_steps >= self.patience
    self.suspect_steps = 0
    self.average = loss if self.average is None else (
        self.decay * self.average + (1 - self.decay) * loss)
    return False


class _Stop(Exception):
  """Raised by the SIGTERM handler to leave the loop through `finally`."""


def psnr_255(mse_255):
  """PSNR in dB of a mean squared error on the 0..255 scale."""
  return 10 * math.log10(255 ** 2 / mse_255) if mse_255 > 0 else float("inf")


class LearningRate:
  """The learning-rate schedule; its state lives in checkpointed variables.

  steps:   lr = learning_rate before lr_boundaries[0], lr_values[i] from
           lr_boundaries[i] on. A boundary b < 1 is a fraction of the budget:
           it is reached when step / max_steps or elapsed_s / max_time_s
           reaches b (so a time-limited run still decays near its end).
  plateau: the mean training loss over each window of `plateau_window` steps
           is compared with the best window so far; after `plateau_patience`
           windows without a relative improvement of `plateau_min_improvement`
           the rate is divided by 10 (paper, Sec. 4). Training ends when it
           would fall below `plateau_min_lr`.
  Step s (from 1) is scaled by min(1, s / lr_warmup_steps), a linear warm-up:
  full-size first Adam steps (1e-3) made the output of the expansive IGDN
  blow up within 20 steps here. Each rollback after divergence multiplies
  the rate by `scale`, 1/10 per rollback (kept in checkpoints).
  """

  def __init__(self, config):
    self.config = config
    self.value = tf.Variable(config.learning_rate, dtype=tf.float32,
                             trainable=False, name="learning_rate")
    # Product of the 1/10 factors of rollbacks after divergence.
    self.scale = tf.Variable(1.0, dtype=tf.float32, trainable=False)
    self.best_loss = tf.Variable(np.inf, dtype=tf.float64, trainable=False)
    self.bad_windows = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.window_sum = tf.Variable(0., dtype=tf.float64, trainable=False)
    self.window_count = tf.Variable(0, dtype=tf.int64, trainable=False)

  def variables(self):
    return dict(value=self.value, scale=self.scale, best_loss=self.best_loss,
                bad_windows=self.bad_windows, window_sum=self.window_sum,
                window_count=self.window_count)

  def update(self, step, loss, elapsed_s=0.0):
    """Sets the rate of step `step` + 1; returns False to end training."""
    c = self.config
    if c.lr_schedule == "plateau" and not self._plateau(loss):
      return False
    self.start(step + 1, elapsed_s)
    return True

  def start(self, step, elapsed_s=0.0):
    """Sets the rate of step `step` (counted from 1) from the schedule."""
    c = self.config
    if c.lr_schedule == "steps":
      progress = (step - 1) / c.max_steps
      if c.max_time_s > 0:
        progress = max(progress, elapsed_s / c.max_time_s)
      lr = c.learning_rate
      for boundary, value in zip(c.lr_boundaries, c.lr_values):
        if (step - 1 >= boundary) if boundary >= 1 else (progress >= boundary):
          lr = value
      self.value.assign(lr * self._warmup(step) * self.scale)
    elif step <= c.lr_warmup_steps:
      self.value.assign(c.learning_rate * self._warmup(step) * self.scale)

  def _warmup(self, step):
    if self.config.lr_warmup_steps <= 0:
      return 1.0
    return min(1.0, step / self.config.lr_warmup_steps)

  def _plateau(self, loss):
    """Accumulates `loss`; at a window end maybe divides the rate by 10."""
    c = self.config
    self.window_sum.assign_add(loss)
    self.window_count.assign_add(1)
    if int(self.window_count) < c.plateau_window:
      return True
    mean = float(self.window_sum) / int(self.window_count)
    self.window_sum.assign(0.)
    self.window_count.assign(0)
    if mean < float(self.best_loss) * (1 - c.plateau_min_improvement):
      self.best_loss.assign(mean)
      self.bad_windows.assign(0)
    else:
      self.bad_windows.assign_add(1)
    if int(self.bad_windows) >= c.plateau_patience:
      lr = float(self.value) / 10
      if lr < c.plateau_min_lr:
        logging.info("loss plateaued at the smallest learning rate: done")
        return False
      logging.info("loss plateaued (window mean %.4f): learning rate "
                   "%.3g -> %.3g", mean, float(self.value), lr)
      self.value.assign(lr)
      self.bad_windows.assign(0)
      self.best_loss.assign(mean)
    return True


def validate(coder, images):
  """Real coding of `images` by a frozen model: (bpp, PSNR dB).

  `coder` is the training model's `coding_copy()` (integer CDF tables from
  the current prior). Each image is compressed and decompressed, and bpp is
  the byte length of the code times 8 over the pixel count. Both are
  averaged over the images.
  """
  bpps, psnrs = [], []
  for image in images:
    string, latent_shape = coder.compress(image)
    decoded = coder.decompress(string, latent_shape, image.shape[:2],
                               image.shape[2]).numpy()
    bpps.append(8 * len(string.numpy()) / (image.shape[0] * image.shape[1]))
    mse_255 = np.mean((decoded.astype(np.float64) - image) ** 2)
    psnrs.append(psnr_255(mse_255))
  return float(np.mean(bpps)), float(np.mean(psnrs))


def _all_finite(variables):
  return all(np.all(np.isfinite(v.numpy())) for v in variables)


def warm_start(model, directory):
  """Copies g_a, g_s and prior weights from a saved model (other lambda)."""
  source = FactorizedPriorModel.load(directory)
  if source.config.num_filters != model.config.num_filters:
    raise ValueError(f"--init_from model has num_filters="
                     f"{source.config.num_filters}, this run "
                     f"{model.config.num_filters}")
  for part in ("analysis", "synthesis", "prior"):
    for target, value in zip(getattr(model, part).variables,
                             getattr(source, part).variables):
      target.assign(value)
  logging.info("warm start from %s (lambda=%g)", directory,
               source.config.lmbda)


class Trainer:
  """Model, optimizer, schedule and checkpoint of one training run."""

  def __init__(self, config):
    self.config = config
    tf.random.set_seed(config.seed)
    self.model = FactorizedPriorModel(config.model_config(),
                                      precision=config.precision)
    self.variables = self.model.trainable_variables
    self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    self.optimizer.build(self.variables)
    self.learning_rate = LearningRate(config)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.elapsed_s = tf.Variable(0., dtype=tf.float64, trainable=False)
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, step=self.step,
        elapsed_s=self.elapsed_s, **self.learning_rate.variables())
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

  def _restore_latest(self):
    """Restores the latest checkpoint, which must match exactly, except that
    checkpoints written before the learning-rate `scale` existed (no
    rollback yet) resume with scale 1."""
    path = self.manager.latest_checkpoint
    status = self.checkpoint.restore(path)
    try:
      status.assert_consumed()
    except AssertionError:
      names = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
      if "scale" in names:
        raise
      status.assert_nontrivial_match()

  def _train_step(self, images):
    """One Adam step; skipped (no update) if loss or gradients are not finite.

    Returns (bpp, mse_255, loss, finite).
    """
    with tf.GradientTape() as tape:
      bpp, mse_255, loss = self.model.rate_distortion(images, training=True)
    gradients = tape.gradient(loss, self.variables)
    finite = tf.reduce_all(
        [tf.math.is_finite(loss)] +
        [tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    if self.config.clip_norm > 0:
      gradients, _ = tf.clip_by_global_norm(gradients, self.config.clip_norm)
    if finite:
      self.optimizer.apply_gradients(zip(gradients, self.variables))
      self.step.assign_add(1)
    return bpp, mse_255, loss, finite

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

  def save_checkpoint(self):
    """Writes a checkpoint unless the weights are not finite; returns path."""
    if not _all_finite(self.model.variables + self.optimizer.variables):
      logging.error("not saving a checkpoint: weights are not finite")
      return None
    return self.manager.save(checkpoint_number=int(self.step))


def train(config, on_step=None):
  """Runs (or resumes) training to `config.max_steps`, then finalizes.

  `on_step(trainer)` is called after every step (tests use it to interrupt).
  Returns the Trainer (not finalized if stopped by SIGTERM).
  """
  os.makedirs(config.model_dir, exist_ok=True)
  trainer = Trainer(config)
  trainer.restore_or_initialize()
  step = trainer.step
  time_left = (config.max_time_s <= 0 or
               float(trainer.elapsed_s) < config.max_time_s)
  if int(step) < config.max_steps and time_left:
    sampler, validation = data.training_data(
        config.train_glob, config.patchsize, config.batchsize,
        config.num_validation, seed=(config.seed, int(step)),
        channels=config.channels)
    try:
      rollbacks = 0
      while True:
        try:
          _run_loop(trainer, sampler, validation, on_step)
          break
        except _Diverged as diverged:
          rollbacks += 1
          trainer.roll_back(diverged, rollbacks)
    except _Stop:
      logging.info("stopped by SIGTERM; rerun the same command to resume")
      return trainer
  finalize(trainer)
  return trainer


def _handle_sigterm(signum, frame):
  raise _Stop()


def _run_loop(trainer, sampler, validation, on_step):
  config, model, step = trainer.config, trainer.model, trainer.step
  writer = tf.summary.create_file_writer(config.model_dir)
  previous_handler = signal.signal(signal.SIGTERM, _handle_sigterm)
  pixels_per_step = config.batchsize * config.patchsize ** 2
  totals = np.zeros(3)
  window_steps, window_start = 0, time.perf_counter()
  session_start = time.perf_counter()
  elapsed_at_start = float(trainer.elapsed_s)
  if int(step) == 0:
    trainer.learning_rate.start(1)
  trainer.optimizer.learning_rate.assign(trainer.learning_rate.value)
  guard = DivergenceGuard(config.divergence_factor)
  failed = False
  try:
    for images in sampler.dataset():
      if int(step) >= config.max_steps:
        break
      bpp, mse_255, loss, finite = trainer.train_step(images)
      if not finite:
        failed = True
        raise NonFiniteLossError(
            f"loss {float(loss)} (bpp {float(bpp)}, MSE {float(mse_255)}) or "
            f"its gradient is not finite at step {int(step) + 1}; the update "
            f"was skipped and no checkpoint written, the last good checkpoint "
            f"is {trainer.manager.latest_checkpoint}. Lower --learning_rate "
            f"or set --clip_norm and rerun to resume from it.")
      current = int(step)
      if guard.diverged(float(loss)):
        raise _Diverged(current, float(loss), guard.average)
      totals += (float(bpp), float(mse_255), float(loss))
      window_steps += 1
      trainer.elapsed_s.assign(
          elapsed_at_start + time.perf_counter() - session_start)
      elapsed_s = float(trainer.elapsed_s)
      keep_going = trainer.learning_rate.update(current, float(loss),
                                                elapsed_s)
      if config.max_time_s > 0 and elapsed_s >= config.max_time_s:
        logging.info("time budget of %.0f s used up at step %d",
                     config.max_time_s, current)
        keep_going = False
      trainer.optimizer.learning_rate.assign(trainer.learning_rate.value)
      if current % config.log_every == 0 or not keep_going:
        now = time.perf_counter()
        steps_per_s = window_steps / (now - window_start)
        bpp_mean, mse_mean, loss_mean = totals / window_steps
        eta_s = (config.max_steps - current) / steps_per_s
        if config.max_time_s > 0:
          eta_s = min(eta_s, config.max_time_s - float(trainer.elapsed_s))
        logging.info(
            "step %d  loss %.4f  bpp %.4f  MSE %.2f  PSNR %.2f dB  lr %.2g  "
            "%.2f steps/s  %.2f Mpix/s  ETA %.0f min", current, loss_mean,
            bpp_mean, mse_mean, psnr_255(mse_mean),
            float(trainer.learning_rate.value), steps_per_s,
            steps_per_s * pixels_per_step / 1e6, eta_s / 60)
        with writer.as_default(step=current):
          tf.summary.scalar("train/loss", loss_mean)
          tf.summary.scalar("train/bpp", bpp_mean)
          tf.summary.scalar("train/mse_255", mse_mean)
          tf.summary.scalar("train/psnr_db", psnr_255(mse_mean))
          tf.summary.scalar("train/learning_rate",
                            float(trainer.learning_rate.value))
          tf.summary.scalar("train/steps_per_s", steps_per_s)
        totals[:] = 0
        window_steps, window_start = 0, time.perf_counter()
      if current % config.checkpoint_every == 0 and not guard.suspect:
        trainer.save_checkpoint()
      if (validation and config.validate_every and
          current % config.validate_every == 0):
        _log_validation(model, validation, writer, current)
        window_start = time.perf_counter()  # exclude validation from speed
      if on_step is not None:
        on_step(trainer)
      if not keep_going:
        break
  except (KeyboardInterrupt, _Stop):
    logging.info("interrupted at step %d", int(step))
    raise
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
    # No checkpoint of non-finite or (guard.suspect) blown-up weights.
    if (not failed and not guard.suspect and
        trainer.manager.latest_checkpoint != os.path.join(
            trainer.manager.directory, f"ckpt-{int(step)}")):
      path = trainer.save_checkpoint()
      logging.info("checkpoint %s", path)
    writer.flush()


def _log_validation(model, images, writer, step):
  start = time.perf_counter()
  bpp, psnr_db = validate(model.coding_copy(), images)
  logging.info("validation step %d: %.4f bpp  %.2f dB PSNR (real coding, "
               "%d images, %.1f s)", step, bpp, psnr_db, len(images),
               time.perf_counter() - start)
  with writer.as_default(step=step):
    tf.summary.scalar("validation/bpp", bpp)
    tf.summary.scalar("validation/psnr_db", psnr_db)
  return bpp, psnr_db


def finalize(trainer):
  """Freezes the current weights for coding; writes final_dir + recipe.json."""
  config, model = trainer.config, trainer.model
  if not _all_finite(model.variables):
    raise NonFiniteLossError("weights are not finite; not finalizing")
  model = model.coding_copy()
  validation_bpp = validation_psnr_db = None
  if config.num_validation:
    files = data.expand_patterns(config.train_glob)
    _, validation_files = data.split_validation(files, config.num_validation)
    images, _ = data.load_images(validation_files, 0, config.channels)
    images = [data.crop_to_multiple(a) for a in images]
    validation_bpp, validation_psnr_db = validate(model, images)
    logging.info("final validation: %.4f bpp  %.2f dB PSNR",
                 validation_bpp, validation_psnr_db)
  model.save(config.final_dir, overwrite=True)
  recipe = {
      "flags": dataclasses.asdict(config),
      "steps": int(trainer.step),
      "wall_time_s": round(float(trainer.elapsed_s), 1),
      "validation_bpp": validation_bpp,
      "validation_psnr_db": validation_psnr_db,
      "model_id": model.model_id.hex(),
  }
  with open(os.path.join(config.final_dir, RECIPE_FILE), "w") as f:
    json.dump(recipe, f, indent=2)
  logging.info("final model (step %d) saved to %s", int(trainer.step),
               config.final_dir)
  return recipe


def finalize_only(config):
  """Freezes and saves the latest checkpoint, trained to the end or not."""
  trainer = Trainer(config)
  if not trainer.manager.latest_checkpoint:
    raise FileNotFoundError(f"no checkpoint in {config.model_dir}")
  trainer.restore_or_initialize()
  return finalize(trainer)
