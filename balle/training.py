"""Training loop for a compression model (balle.compression_model; the
factorized prior of Ballé et al., ICLR 2017, by default).

Minimizes loss = R + lambda * D (`rate_distortion`, D named by the model's
`distortion` setting, balle.losses) with Adam on random
patches (paper, Sec. 4). One session of `train` is the algorithm:

    for each batch of patches:       sample
      one Adam step on the loss      step
      log the means of a window      log
      every checkpoint_every steps   maybe checkpoint
      every validate_every steps     maybe validate (real coding)

and the rest lives in named helpers beside it: the learning-rate schedule
(`LearningRate`; the paper divides the rate by 10 when the loss stops
improving, "plateau"), the step and time budget (`budget_used_up`), the
divergence guard and its rollback (`DivergenceGuard`, `Trainer.roll_back`),
the log lines and summaries (`_ProgressLog`), SIGTERM handling and the
checkpoint written when a session ends (`_checkpoint_on_exit`).

Everything needed to continue a run (weights, Adam moments, step, schedule
state, elapsed time, the weight average if any) is in a tf.train.Checkpoint
in `model_dir`, written every `checkpoint_every` steps and on exit (also on
SIGTERM/Ctrl-C); rerunning the same command resumes from the latest one. A
non-finite loss or gradient stops the run without updating the weights and
without writing a checkpoint, so the last good checkpoint stays the latest.

Training ends at `max_steps`, or when the training wall time (summed over
resumed sessions) reaches `max_time_s` if that is > 0, or when the plateau
schedule runs out of learning rates. Then the model is frozen for coding (CDF
tables) and saved to `final_dir` (default `<model_dir>/final`) with a
`recipe.json`. Rerunning a finished run only (re)does this final step;
`finalize_only` does it from the latest checkpoint of an unfinished run.

Options beyond the paper's recipe, all off by default: an exponential moving
average of the weights (`ema_decay`), a learning-rate multiplier for the
prior (`prior_lr_scale`) and a decoder-only fine-tune on rounded latents
(`finetune_decoder_rounded`).
"""

import contextlib
import dataclasses
import json
import os
import signal
import time

from absl import logging
import numpy as np
import tensorflow as tf

from balle import codec
from balle import compression_model
from balle import data
from balle import metrics
from balle import widen
from balle.compression_model import ModelConfig
from balle.compression_model import setting
from balle.safe_write import write_file_atomic

LR_SCHEDULES = ("constant", "steps", "plateau")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
RECIPE_FILE = "recipe.json"
# Filters N of the models the recipe trains, RGB included, where ModelConfig
# defaults to the paper's 192: a step at N = 192 costs about 2x one at
# N = 128 on a CPU, so on the budgets here N = 128 gets twice the updates
# (README, Training). --num_filters=0 selects the paper's count.
RECIPE_NUM_FILTERS = 128


def recipe_model(**settings):
  """ModelConfig(**settings), num_filters defaulting to the recipe's."""
  return ModelConfig(**{"num_filters": RECIPE_NUM_FILTERS, **settings})


@dataclasses.dataclass
class TrainConfig:
  """Every setting of a training run, each declared once with its help text.

  `model` holds the model's settings (lmbda, channels, num_filters,
  gdn_form, architecture, distortion); experiments/train.py makes one flag
  per setting with a help text, the model's under their own names, and
  `create` / `settings` convert between this nesting and those flat names.
  """
  model_dir: str = setting("", "Checkpoints, summaries and the final model.")
  model: ModelConfig = dataclasses.field(default_factory=recipe_model)
  train_glob: tuple = setting((), "Training images: glob patterns or folders; "
                              "repeat the flag or separate with commas.",
                              repeated=True)
  patchsize: int = setting(128, "Side of the random training crops in px.")
  batchsize: int = setting(8, "Patches per step.")
  max_steps: int = setting(100_000, "Step budget.")
  max_time_s: float = setting(0.0, "Training wall-time budget in seconds, "
                              "summed over resumed sessions (0: none).")
  learning_rate: float = setting(1e-3, "Initial Adam learning rate.")
  lr_warmup_steps: int = setting(200, "Linear warm-up of the rate over the "
                                 "first steps.")
  lr_schedule: str = setting("steps", "steps: --lr_values from "
                             "--lr_boundaries on; plateau: divide by 10 when "
                             "the loss stops improving (paper); constant.",
                             choices=LR_SCHEDULES)
  lr_boundaries: tuple = setting((0.8,), "Steps where the rate changes; a "
                                 "value < 1 is a fraction of the step or "
                                 "time budget.")
  lr_values: tuple = setting((1e-4,), "Rates from each boundary on.")
  plateau_window: int = setting(1000, "Steps per loss average (plateau).")
  plateau_patience: int = setting(3, "Windows without improvement before "
                                  "dividing the rate by 10 (plateau).")
  plateau_min_improvement: float = setting(0.005, "Relative improvement of "
                                           "the window mean that counts.")
  plateau_min_lr: float = setting(1e-6, "Stop when the rate would fall below "
                                  "this (plateau).")
  clip_norm: float = setting(0.0, "Clip gradients to this global norm "
                             "(0: no clipping).")
  divergence_factor: float = setting(10.0, "A loss above this many times its "
                                     "recent average for "
                                     "--divergence_patience steps in a row "
                                     "counts as a blow-up: the run rolls back "
                                     "to its last checkpoint and divides the "
                                     "learning rate by 10 (0: off).")
  divergence_patience: int = setting(20, "Suspect steps in a row that make a "
                                     "blow-up (see --divergence_factor).")
  max_rollbacks: int = setting(3, "Rollbacks before a blow-up stops the run "
                               "with an error.")
  ema_decay: float = setting(0.0, "Keep an exponential moving average of the "
                             "weights, a <- d a + (1 - d) w after each step "
                             "(e.g. 0.999: ~1000 steps), and validate and "
                             "save it instead of the weights (0: off).")
  prior_lr_scale: float = setting(1.0, "Learning-rate multiplier for the "
                                  "prior's (entropy model's) variables.")
  finetune_decoder_rounded: bool = setting(
      False, "Train only g_s, on rounded latents as at coding time, with g_a "
      "and the prior frozen (a final fine-tune, e.g. after --init_from).")
  precision: str = setting("auto", "Arithmetic of the transforms while "
                           "training; auto: mixed_bfloat16 on CPUs with "
                           "avx512_bf16/amx_bf16, else float32. Weights and "
                           "the saved model are float32.", choices=PRECISIONS)
  init_from: str = setting("", "Saved model folder to warm-start from "
                           "(fine-tuning another lambda).")
  seed: int = setting(0, "Seed of the initialization and patches.")
  log_every: int = setting(100, "Steps between log lines.")
  checkpoint_every: int = setting(500, "Steps between checkpoints.")
  validate_every: int = setting(2000, "Steps between validations (0: none).")
  num_validation: int = setting(6, "Training images held out for "
                                "validation (those with the smallest "
                                "SHA-256 of the file name).")
  validation_glob: tuple = setting((), "Validation images instead: glob "
                                   "patterns or folders, excluded from "
                                   "training where --train_glob matches "
                                   "them too.", repeated=True)
  max_checkpoints: int = setting(3, "Checkpoints kept.")
  final_dir: str = setting("", "Where to save the frozen model (default "
                           "<model_dir>/final).")

  def __post_init__(self):
    if not self.model_dir:
      raise ValueError("model_dir is required")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}")
    if self.lr_schedule == "steps":
      if len(self.lr_boundaries) != len(self.lr_values):
        raise ValueError("lr_boundaries and lr_values need the same length")
      if list(self.lr_boundaries) != sorted(self.lr_boundaries):
        raise ValueError("lr_boundaries must be increasing")
    if not 0 <= self.ema_decay < 1:
      raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
    if self.prior_lr_scale < 0:
      raise ValueError("prior_lr_scale must be >= 0")
    if self.divergence_patience < 1:
      raise ValueError("divergence_patience must be >= 1")
    if not self.final_dir:
      self.final_dir = os.path.join(self.model_dir, "final")
    self.precision = resolve_precision(self.precision)

  @classmethod
  def create(cls, **settings):
    """A TrainConfig from flat settings (the flag names); model settings not
    given are the recipe's (`recipe_model`)."""
    model = {name: settings.pop(name) for name in list(settings)
             if name in _MODEL_FIELDS}
    return cls(model=recipe_model(**model), **settings)

  def settings(self):
    """{flag name: value} of every setting, the inverse of `create`."""
    return {name: getattr(self.model if name in _MODEL_FIELDS else self, name)
            for name, _, _ in setting_fields()}


_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


def setting_fields():
  """(name, default, metadata) of each setting that has a help text, in
  declaration order, the model's in place of the `model` field. Defaults are
  the recipe's (TrainConfig's default model, not ModelConfig's)."""
  fields = []
  for field in dataclasses.fields(TrainConfig):
    if field.name == "model":
      model = field.default_factory()
      fields += [(f.name, getattr(model, f.name), f.metadata)
                 for f in dataclasses.fields(ModelConfig) if f.metadata]
    elif field.metadata:
      fields.append((field.name, field.default, field.metadata))
  return fields


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


class _Stop(Exception):
  """Raised by the SIGTERM handler to leave the loop through `finally`."""


def train(config, on_step=None):
  """Runs (or resumes) training until a budget is used up, then finalizes.

  `on_step(trainer)` is called after every step (tests use it to interrupt).
  Returns the Trainer (not finalized if stopped by SIGTERM).
  """
  os.makedirs(config.model_dir, exist_ok=True)
  trainer = Trainer(config)
  trainer.restore_or_initialize()
  if not budget_used_up(config, int(trainer.step), float(trainer.elapsed_s)):
    sampler, validation = data.training_data(
        config.train_glob, config.patchsize, config.batchsize,
        trainer.model.downsampling_factor, config.num_validation,
        seed=(config.seed, int(trainer.step)),
        channels=config.model.channels,
        validation_patterns=config.validation_glob)
    try:
      _train_with_rollbacks(trainer, sampler, validation, on_step)
    except _Stop:
      logging.info("stopped by SIGTERM; rerun the same command to resume")
      return trainer
  finalize(trainer)
  return trainer


def _train_with_rollbacks(trainer, sampler, validation, on_step):
  """Training sessions until one ends normally; a blow-up rolls back."""
  rollbacks = 0
  while True:
    try:
      return _train_session(trainer, sampler, validation, on_step)
    except _Diverged as diverged:
      rollbacks += 1
      trainer.roll_back(diverged, rollbacks)


def _train_session(trainer, sampler, validation, on_step):
  """Trains from the current step until a budget is used up or the plateau
  schedule ends. Raises _Diverged, NonFiniteLossError or _Stop (SIGTERM)."""
  config = trainer.config
  clock = _TrainingClock(trainer.elapsed_s)
  guard = DivergenceGuard(config.divergence_factor,
                          config.divergence_patience)
  trainer.start_schedule()
  with (_sigterm_raises_stop(), _checkpoint_on_exit(trainer, guard),
        _ProgressLog(config) as log):
    for images in sampler.dataset():
      bpp, mse_255, loss = trainer.train_on(images)
      step = int(trainer.step)
      if guard.diverged(loss):
        raise _Diverged(step, loss, guard.average)
      elapsed_s = clock.tick()
      done = not trainer.advance_schedule(step, loss, elapsed_s)
      done = budget_used_up(config, step, elapsed_s) or done
      log.add(bpp, mse_255, loss)
      if _due(step, config.log_every) or done:
        log.write(step, float(trainer.learning_rate.value), elapsed_s)
      if _due(step, config.checkpoint_every) and not guard.suspect:
        trainer.save_checkpoint()
      if validation and _due(step, config.validate_every):
        log.validation(step, trainer, validation)
      if on_step is not None:
        on_step(trainer)
      if done:
        return


def budget_used_up(config, step, elapsed_s):
  """Whether training ends at `step` after `elapsed_s` s (logs why)."""
  if step >= config.max_steps:
    logging.info("step budget of %d steps used up", config.max_steps)
    return True
  if config.max_time_s > 0 and elapsed_s >= config.max_time_s:
    logging.info("time budget of %.0f s used up at step %d",
                 config.max_time_s, step)
    return True
  return False


def _due(step, every):
  """Whether a periodic action (every `every` steps; 0: never) is due."""
  return every > 0 and step % every == 0


class _TrainingClock:
  """Training wall time of the run: earlier sessions' (checkpointed in
  `elapsed_s`) plus this session's."""

  def __init__(self, elapsed_s):
    self.elapsed_s = elapsed_s
    self.at_start_s = float(elapsed_s)
    self.start = time.perf_counter()

  def tick(self):
    """Updates and returns the run's training time in seconds."""
    self.elapsed_s.assign(self.at_start_s + time.perf_counter() - self.start)
    return float(self.elapsed_s)


def _raise_stop(signum, frame):
  del signum, frame
  raise _Stop()


@contextlib.contextmanager
def _sigterm_raises_stop():
  """SIGTERM raises _Stop inside the loop, so that it leaves through the
  exit checkpoint like Ctrl-C; the previous handler comes back after."""
  previous = signal.signal(signal.SIGTERM, _raise_stop)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _checkpoint_on_exit(trainer, guard):
  """Checkpoints the last step however a session ends (budget, SIGTERM,
  Ctrl-C, an error in a callback), except after a non-finite loss (the last
  good checkpoint stays the latest) or while the guard suspects a blow-up."""
  keep = True
  try:
    yield
  except NonFiniteLossError:
    keep = False
    raise
  except (KeyboardInterrupt, _Stop):
    logging.info("interrupted at step %d", int(trainer.step))
    raise
  finally:
    if keep and not guard.suspect and (
        not trainer.has_checkpoint_of_current_step()):
      logging.info("checkpoint %s", trainer.save_checkpoint())


class _ProgressLog:
  """Log lines and TensorBoard summaries (in model_dir) of a session.

  Training figures are means over the steps since the last line; speed
  excludes validation time; the ETA is the nearer of the step and time
  budgets at the current speed.
  """

  def __init__(self, config):
    self.config = config
    self.writer = tf.summary.create_file_writer(config.model_dir)
    self.pixels_per_step = config.batchsize * config.patchsize ** 2
    self._restart_window()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.writer.flush()

  def _restart_window(self):
    self.totals = np.zeros(3)
    self.steps = 0
    self.start = time.perf_counter()

  def add(self, bpp, mse_255, loss):
    self.totals += (bpp, mse_255, loss)
    self.steps += 1

  def write(self, step, learning_rate, elapsed_s):
    c = self.config
    steps_per_s = self.steps / (time.perf_counter() - self.start)
    bpp, mse_255, loss = self.totals / self.steps
    psnr_db = metrics.psnr_from_mse(mse_255)
    eta_s = (c.max_steps - step) / steps_per_s
    if c.max_time_s > 0:
      eta_s = min(eta_s, c.max_time_s - elapsed_s)
    logging.info(
        "step %d  loss %.4f  bpp %.4f  MSE %.2f  PSNR %.2f dB  lr %.2g  "
        "%.2f steps/s  %.2f Mpix/s  ETA %.0f min", step, loss, bpp, mse_255,
        psnr_db, learning_rate, steps_per_s,
        steps_per_s * self.pixels_per_step / 1e6, eta_s / 60)
    self._summaries(step, "train", loss=loss, bpp=bpp, mse_255=mse_255,
                    psnr_db=psnr_db, learning_rate=learning_rate,
                    steps_per_s=steps_per_s)
    self._restart_window()

  def validation(self, step, trainer, images):
    """Validates the trainer's model on `images` (real coding); logs it."""
    start = time.perf_counter()
    bpp, psnr_db = validate(trainer.coding_copy(), images)
    logging.info("validation step %d: %.4f bpp  %.2f dB PSNR (real coding, "
                 "%d images, %.1f s)", step, bpp, psnr_db, len(images),
                 time.perf_counter() - start)
    self._summaries(step, "validation", bpp=bpp, psnr_db=psnr_db)
    self.start += time.perf_counter() - start

  def _summaries(self, step, prefix, **values):
    with self.writer.as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(f"{prefix}/{name}", value)


# Checkpoint parts a checkpoint may lack or have in excess: the rate `scale`
# (before rollbacks existed) and the weight average (runs without it).
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
      bpp, mse_255, loss = self.model.rate_distortion(images,
                                                      training=training)
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
    if not _all_finite(self.state_variables()):
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


def _all_finite(variables):
  return all(np.all(np.isfinite(v.numpy())) for v in variables)


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


class DivergenceGuard:
  """Detects a loss that blew up without becoming NaN.

  At a high learning rate the expansive IGDN of g_s can run away: the loss
  jumps by orders of magnitude (here from 2.4 to 3e4 within 500 steps at
  step ~7.2k of a 1e-3 run) and does not come back. A step is suspect when
  its loss exceeds `factor` times an exponential moving average of the
  losses of non-suspect steps; `patience` suspect steps in a row mean the
  run diverged. factor <= 0 disables the guard.
  """

  def __init__(self, factor, patience, decay=0.98):
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


class WeightAverage:
  """Exponential moving average of the weights (Polyak averaging).

  After every update a <- decay * a + (1 - decay) * w, so a averages the
  weights of the last ~1 / (1 - decay) steps and smooths out the noise of
  the stochastic steps. It starts equal to the weights (no bias correction
  needed), is checkpointed, and is what validation and the final model use.
  """

  def __init__(self, variables, decay):
    self.decay = decay
    self.weights = list(variables)
    self.averages = [tf.Variable(w, trainable=False) for w in self.weights]

  def update(self):
    for average, weight in zip(self.averages, self.weights):
      average.assign_sub((1 - self.decay) * (average - weight))

  def reset(self):
    """Restarts the average at the current weights."""
    for average, weight in zip(self.averages, self.weights):
      average.assign(weight)

  @contextlib.contextmanager
  def applied(self):
    """Puts the averages in the weights' place for the duration."""
    saved = [w.numpy() for w in self.weights]
    for average, weight in zip(self.averages, self.weights):
      weight.assign(average)
    try:
      yield
    finally:
      for value, weight in zip(saved, self.weights):
        weight.assign(value)


def validate(coder, images):
  """Real coding of `images` by a frozen model: mean (bpp, PSNR dB).

  `coder` is a frozen model (`Trainer.coding_copy()`). Each image becomes a
  complete .balle file (`codec.compress_image`: header, range-coded latents,
  checksum) and is decoded again; bpp is 8 x the file size over the pixel
  count and PSNR the RGB PSNR of the decoded image, as every evaluation in
  the project measures them (`balle.metrics`). Both are averaged over the
  images.
  """
  bpps, psnrs = [], []
  for image in images:
    file_bytes = codec.compress_image(coder, image)
    decoded = codec.decompress_image(file_bytes, coder)
    bpps.append(metrics.bits_per_pixel(len(file_bytes), *image.shape[:2]))
    psnrs.append(metrics.psnr_rgb(image, decoded))
  return float(np.mean(bpps)), float(np.mean(psnrs))


def finalize(trainer):
  """Freezes the trained weights (their average if kept) for coding; writes
  final_dir with recipe.json (the settings, paths made portable)."""
  config = trainer.config
  if not _all_finite(trainer.state_variables()):
    raise NonFiniteLossError("weights are not finite; not finalizing")
  model = trainer.coding_copy()
  validation_bpp = validation_psnr_db = None
  if config.num_validation or config.validation_glob:
    files = data.expand_patterns(config.train_glob)
    _, validation_files = data.split_validation(
        files, config.num_validation, config.validation_glob)
    images, _ = data.load_images(validation_files, 0, config.model.channels)
    images = [data.crop_to_multiple(a, model.downsampling_factor)
              for a in images]
    validation_bpp, validation_psnr_db = validate(model, images)
    logging.info("final validation: %.4f bpp  %.2f dB PSNR",
                 validation_bpp, validation_psnr_db)
  model.save(config.final_dir, overwrite=True)
  recipe = {
      "flags": recipe_settings(config),
      "steps": int(trainer.step),
      "wall_time_s": round(float(trainer.elapsed_s), 1),
      "validation_bpp": validation_bpp,
      "validation_psnr_db": validation_psnr_db,
      "model_id": model.model_id.hex(),
  }
  text = json.dumps(recipe, indent=2) + "\n"
  write_file_atomic(os.path.join(config.final_dir, RECIPE_FILE),
                    lambda f: f.write(text.encode()), overwrite=True)
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


def recipe_settings(config):
  """config.settings() with the paths made portable (`portable_path`)."""
  settings = config.settings()
  for name in ("model_dir", "init_from", "final_dir"):
    settings[name] = portable_path(settings[name])
  for name in ("train_glob", "validation_glob"):
    settings[name] = [portable_path(p) for p in settings[name]]
  return settings


def portable_path(path):
  """`path` as recipe.json records it: relative to the working directory
  when given relative or inside it, otherwise ".../" and its last two
  components, so no absolute path of the training machine is published.
  Comma-separated lists are converted item by item."""
  if "," in path:
    return ",".join(portable_path(p) for p in path.split(","))
  if not path or not os.path.isabs(path):
    return os.path.normpath(path) if path else path
  relative = os.path.relpath(path, os.getcwd())
  if not relative.startswith(os.pardir):
    return relative
  return "/".join(["..."] + path.rstrip(os.sep).split(os.sep)[-2:])
