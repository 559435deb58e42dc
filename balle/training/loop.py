"""The training loop of a compression model (balle.models.compression_model; the
factorized prior of Ballé et al., ICLR 2017, by default).

Minimizes loss = R + lambda * D (`rate_distortion`, D named by the model's
`distortion` setting, balle.models.losses) with Adam on random patches (paper,
Sec. 4). One session of `train` is the algorithm:

    for each batch of patches:       sample
      one Adam step on the loss      step
      log the means of a window      log
      every checkpoint_every steps   maybe checkpoint
      every validate_every steps     maybe validate (real coding)

Its parts each have one home: the settings (`balle.training.config`), the run's
state, step and checkpoints (`balle.training.trainer.Trainer`), the
learning-rate schedule, divergence guard and weight average
(`balle.training.schedules`; the paper divides the rate by 10 when the loss
stops improving, "plateau"), the training patches (`balle.data`). Here: the
loop, the step and time budget (`budget_used_up`), the rollback after a blow-up,
the log lines and summaries (`_ProgressLog`), SIGTERM handling and the
checkpoint written when a session ends (`_checkpoint_on_exit`), and the frozen
model written at the end (`finalize`).

Under a tf.distribute strategy (`--strategy`, balle.training.distribute) the
loop is the same: each batch is split over the replicas, and every decision
(budget, schedule, guard, checkpoint) is taken from figures all workers share,
so they take it alike. Only the chief validates and writes summaries and the
final model.

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
"""

import contextlib
import json
import os
import signal
import time

from absl import logging
import numpy as np
import tensorflow as tf

from balle.data import input_pipeline
from balle.data.files import crop_to_multiple
from balle.data.files import expand_patterns
from balle.data.files import load_images
from balle.data.files import split_validation
from balle.evaluation import metrics
from balle.io.safe_write import write_file_atomic
from balle.training import distribute
from balle.training.config import RECIPE_FILE
from balle.training.schedules import DivergenceGuard
from balle.training.trainer import all_finite
from balle.training.trainer import NonFiniteLossError
from balle.training.trainer import Trainer
from balle.training.validation import reconstruction_pairs
from balle.training.validation import validate


class _Diverged(Exception):
  """Raised in the loop when DivergenceGuard fires; train() rolls back."""

  def __init__(self, step, loss, baseline):
    super().__init__(step, loss, baseline)
    self.step, self.loss, self.baseline = step, loss, baseline


class _Stop(Exception):
  """Raised by the SIGTERM handler to leave the loop through `finally`."""


class WorkerLostError(RuntimeError):
  """A worker of a multi_worker cluster stopped: TensorFlow's coordination
  service misses its heartbeats (~10 s) and aborts the collectives of the
  others, so every worker stops and all must be started again."""


def train(config, on_step=None):
  """Runs (or resumes) training until a budget is used up, then finalizes.

  `on_step(trainer)` is called after every step (tests use it to interrupt).
  Returns the Trainer (not finalized if stopped by SIGTERM).
  """
  trainer = Trainer(config)
  if trainer.is_chief:
    os.makedirs(config.model_dir, exist_ok=True)
  trainer.restore_or_initialize()
  if not budget_used_up(config, int(trainer.step), float(trainer.elapsed_s)):
    sampler, validation = input_pipeline.training_data(
        config.train_glob, config.patchsize, config.batchsize,
        trainer.model.downsampling_factor, config.num_validation,
        seed=(config.seed, int(trainer.step)),
        channels=config.model.channels,
        validation_patterns=config.validation_glob,
        random_downsample=config.random_downsample,
        pipeline=config.input_pipeline,
        memory_budget_gib=config.memory_budget_gib)
    try:
      _train_with_rollbacks(trainer, sampler, validation, on_step)
    except _Stop:
      logging.info("stopped by SIGTERM; rerun the same command to resume")
      return trainer
    except tf.errors.UnavailableError as error:
      if config.strategy != "multi_worker":
        raise
      raise WorkerLostError(
          f"a worker of the cluster stopped at step {int(trainer.step)} "
          f"({_cause(error.message)}): start every worker again "
          f"with the same flags; they resume from the chief's latest "
          f"checkpoint ({trainer.latest_checkpoint})") from None
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
  clock = _TrainingClock(trainer)
  guard = DivergenceGuard(config.divergence_factor,
                          config.divergence_patience)
  trainer.start_schedule()
  with (_sigterm_raises_stop(), _checkpoint_on_exit(trainer, guard),
        _ProgressLog(config, trainer.is_chief) as log):
    for images in trainer.distributed(sampler):
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
      if validation and trainer.is_chief and _due(step,
                                                  config.validate_every):
        log.validation(step, trainer, validation)
      if on_step is not None:
        on_step(trainer)
      if done:
        return


def _cause(message):
  """The sentence of a TensorFlow error message that says what happened."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  line = next((line for line in lines if "aborted by: " in line),
              lines[0] if lines else "no message")
  line = line.split("aborted by: ")[-1]
  return line.split(". ")[0][:300]


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
  `elapsed_s`) plus this session's, its mean over the workers."""

  def __init__(self, trainer):
    self.elapsed_s = trainer.elapsed_s
    self.strategy = trainer.strategy
    self.at_start_s = float(self.elapsed_s)
    self.start = time.perf_counter()

  def tick(self):
    """Updates and returns the run's training time in seconds."""
    self.elapsed_s.assign(distribute.mean_over_workers(
        self.strategy, self.at_start_s + time.perf_counter() - self.start))
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
  good checkpoint stays the latest), after a lost worker (the checkpoint
  needs them all) or while the guard suspects a blow-up."""
  keep = True
  try:
    yield
  except (NonFiniteLossError, tf.errors.UnavailableError):
    keep = False  # after UnavailableError (a worker lost) no collective runs
    raise
  except (KeyboardInterrupt, _Stop):
    logging.info("interrupted at step %d", int(trainer.step))
    raise
  finally:
    if keep and not guard.suspect and (
        not trainer.has_checkpoint_of_current_step()):
      logging.info("checkpoint %s", trainer.save_checkpoint())


class _ProgressLog:
  """Log lines and TensorBoard summaries (in model_dir, if `summaries`) of
  a session.

  Training figures are means over the steps since the last line; speed
  excludes validation time; the ETA is the nearer of the step and time
  budgets at the current speed.
  """

  def __init__(self, config, summaries=True):
    self.config = config
    self.writer = (tf.summary.create_file_writer(config.model_dir)
                   if summaries else tf.summary.create_noop_writer())
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
    coder = trainer.coding_copy()
    bpp, psnr_db = validate(coder, images)
    logging.info("validation step %d: %.4f bpp  %.2f dB PSNR (real coding, "
                 "%d images, %.1f s)", step, bpp, psnr_db, len(images),
                 time.perf_counter() - start)
    self._summaries(step, "validation", bpp=bpp, psnr_db=psnr_db)
    with self.writer.as_default(step=step):
      for index, pair in enumerate(reconstruction_pairs(coder, images)):
        tf.summary.image(f"validation/reconstruction_{index}", pair[None])
    self.start += time.perf_counter() - start

  def _summaries(self, step, prefix, **values):
    with self.writer.as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(f"{prefix}/{name}", value)


def finalize(trainer):
  """Freezes the trained weights (their average if kept) for coding; writes
  final_dir with recipe.json (the settings, paths made portable). Only the
  chief does; the other workers wait until it is done and return None."""
  config = trainer.config
  if not trainer.is_chief:
    distribute.barrier(trainer.strategy)
    return None
  if not all_finite(trainer.state_variables()):
    raise NonFiniteLossError("weights are not finite; not finalizing")
  model = trainer.coding_copy()
  validation_bpp = validation_psnr_db = None
  if config.num_validation or config.validation_glob:
    files = expand_patterns(config.train_glob)
    _, validation_files = split_validation(
        files, config.num_validation, config.validation_glob)
    images, _ = load_images(validation_files, 0, config.model.channels)
    images = [crop_to_multiple(a, model.downsampling_factor)
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
  distribute.barrier(trainer.strategy)
  return recipe


def finalize_only(config):
  """Freezes and saves the latest checkpoint, trained to the end or not."""
  trainer = Trainer(config)
  if not trainer.latest_checkpoint:
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
