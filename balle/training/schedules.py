"""What changes or guards a run step by step: the learning-rate schedule
(`LearningRate`), the divergence guard (`DivergenceGuard`) and the weight
average (`WeightAverage`). Their state lives in tf.Variables that the
trainer checkpoints.
"""

import contextlib

from absl import logging
import numpy as np
import tensorflow as tf


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
