"""Tests of the training loop (balle/training.py) on tiny generated images."""

import json
import os
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from balle import training
from balle.model import FactorizedPriorModel


def _smooth_image(height, width, seed):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  planes = [128 + 90 * np.sin(x / rng.uniform(5, 12) + rng.uniform(0, 6))
            * np.cos(y / rng.uniform(5, 12) + c) for c in range(3)]
  image = np.stack(planes, -1) + rng.normal(0, 4, (height, width, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("images")
  for i in range(6):
    Image.fromarray(_smooth_image(48, 64, i)).save(directory / f"im_{i}.png")
  return str(directory)


def _config(model_dir, image_dir, **overrides):
  settings = dict(model_dir=str(model_dir), train_glob=(image_dir,),
                  num_filters=8, patchsize=32, batchsize=2, max_steps=10,
                  learning_rate=1e-2, lr_warmup_steps=0, lr_boundaries=(),
                  lr_values=(), log_every=5, checkpoint_every=4,
                  validate_every=0, num_validation=1)
  settings.update(overrides)
  return training.TrainConfig(**settings)


class _Interrupt(Exception):
  pass


def test_training_lowers_the_loss_and_writes_final_model(tmp_path, image_dir):
  images = tf.constant(np.stack([_smooth_image(32, 32, 10 + i)
                                 for i in range(4)]), tf.float32)
  config = _config(tmp_path, image_dir, max_steps=40, validate_every=20)
  trainer = training.Trainer(config)
  tf.random.set_seed(1)
  _, _, loss_before = trainer.model.rate_distortion(images, training=False)
  trainer = training.train(config)
  _, _, loss_after = trainer.model.rate_distortion(images, training=False)
  assert float(loss_after) < 0.5 * float(loss_before)
  final = FactorizedPriorModel.load(config.final_dir)
  with open(os.path.join(config.final_dir, training.RECIPE_FILE)) as f:
    recipe = json.load(f)
  assert recipe["steps"] == 40 and recipe["flags"]["num_filters"] == 8
  assert recipe["validation_bpp"] > 0 and recipe["validation_psnr_db"] > 0
  image = _smooth_image(32, 48, 3)
  string, latent_shape = final.compress(image)
  decoded = final.decompress(string, latent_shape, image.shape[:2], 3)
  assert decoded.shape == image.shape


def test_resume_after_interruption_restores_step_and_optimizer(tmp_path,
                                                               image_dir):
  config = _config(tmp_path, image_dir)
  checkpoints = os.path.join(config.model_dir, "checkpoints")
  snapshots = {}

  def snapshot_then_crash(trainer):
    step = int(trainer.step)
    if step in (4, 6):
      snapshots[step] = ([v.numpy() for v in trainer.optimizer.variables],
                         [v.numpy() for v in trainer.model.variables])
    if step == 4:  # the files a kill -9 right after this step would leave
      shutil.copytree(checkpoints, str(tmp_path / "at_step_4"))
    if step == 6:
      raise _Interrupt()

  def assert_resumes_at(step):
    resumed = training.Trainer(config)
    resumed.restore_or_initialize()
    assert int(resumed.step) == step
    assert int(resumed.optimizer.iterations) == step
    optimizer_values, model_values = snapshots[step]
    for saved, restored in zip(optimizer_values, resumed.optimizer.variables):
      np.testing.assert_array_equal(saved, restored.numpy())
    for saved, restored in zip(model_values, resumed.model.variables):
      np.testing.assert_array_equal(saved, restored.numpy())

  with pytest.raises(_Interrupt):
    training.train(config, on_step=snapshot_then_crash)
  assert_resumes_at(6)  # interrupted: saved on the way out
  shutil.rmtree(checkpoints)
  shutil.copytree(str(tmp_path / "at_step_4"), checkpoints)
  assert_resumes_at(4)  # killed: the last periodic checkpoint
  trainer = training.train(config)
  assert int(trainer.step) == 10 and int(trainer.optimizer.iterations) == 10


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path,
                                                              image_dir):
  config = _config(tmp_path, image_dir, max_steps=20)

  def poison_at_step_5(trainer):
    if int(trainer.step) == 5:
      kernel = trainer.model.synthesis.variables[-2]
      kernel.assign(tf.fill(kernel.shape, np.nan))

  with pytest.raises(training.NonFiniteLossError, match="not finite"):
    training.train(config, on_step=poison_at_step_5)
  resumed = training.Trainer(config)
  assert resumed.manager.latest_checkpoint.endswith("ckpt-4")
  resumed.restore_or_initialize()
  assert int(resumed.step) == 4
  assert all(np.all(np.isfinite(v.numpy())) for v in resumed.model.variables)
  assert not os.path.exists(config.final_dir)


def test_divergence_guard_needs_a_sustained_jump():
  guard = training.DivergenceGuard(factor=10, patience=3, decay=0.5)
  assert not any(guard.diverged(loss) for loss in [50, 20, 8, 5, 4, 30, 4])
  assert [guard.diverged(400) for _ in range(3)] == [False, False, True]
  assert guard.suspect
  assert not training.DivergenceGuard(factor=0).diverged(1e9)


def _blow_up(trainer):
  """Scales g_s's last convolution: a huge but finite loss."""
  for variable in trainer.model.synthesis.layers[-1].trainable_variables:
    variable.assign(variable * 1000)


def test_blow_up_rolls_back_and_lowers_the_rate(tmp_path, image_dir):
  config = _config(tmp_path, image_dir, max_steps=40)
  blown = []

  def blow_up_once_at_step_6(trainer):
    if int(trainer.step) == 6 and not blown:
      blown.append(True)
      _blow_up(trainer)

  trainer = training.train(config, on_step=blow_up_once_at_step_6)
  assert blown and int(trainer.step) == 40
  assert float(trainer.learning_rate.scale) == pytest.approx(0.1)
  assert float(trainer.optimizer.learning_rate) == pytest.approx(1e-3)
  assert os.path.exists(config.final_dir)


def test_repeated_blow_ups_stop_the_run(tmp_path, image_dir):
  config = _config(tmp_path, image_dir, max_steps=200, max_rollbacks=2)

  def blow_up_after_step_5(trainer):
    if int(trainer.step) == 6:
      _blow_up(trainer)

  with pytest.raises(training.DivergedError, match="2 rollbacks did not help"):
    training.train(config, on_step=blow_up_after_step_5)
  assert not os.path.exists(config.final_dir)


def test_checkpoint_from_before_the_rate_scale_resumes(tmp_path, image_dir):
  config = _config(tmp_path, image_dir)
  old = training.Trainer(config)
  old.step.assign(7)
  variables = old.learning_rate.variables()
  del variables["scale"]  # what checkpoints held before rollbacks existed
  checkpoint = tf.train.Checkpoint(model=old.model, optimizer=old.optimizer,
                                   step=old.step, elapsed_s=old.elapsed_s,
                                   **variables)
  tf.train.CheckpointManager(checkpoint, old.manager.directory, 3).save(7)
  resumed = training.Trainer(config)
  resumed.restore_or_initialize()
  assert int(resumed.step) == 7
  assert float(resumed.learning_rate.scale) == 1.0


def test_plateau_divides_the_rate_by_ten(tmp_path):
  config = training.TrainConfig(
      model_dir=str(tmp_path), lr_schedule="plateau", learning_rate=1e-3,
      lr_warmup_steps=0, plateau_window=2, plateau_patience=2, plateau_min_lr=1e-5)
  schedule = training.LearningRate(config)
  rates, keep_going, step = [], True, 0
  while keep_going:
    step += 1
    keep_going = schedule.update(step, 1.0)  # the loss never improves
    rates.append(float(schedule.value))
  assert rates[0] == pytest.approx(1e-3)
  assert rates[6] == pytest.approx(1e-4)  # first window sets the best loss
  assert min(rates) == pytest.approx(1e-5)
  assert step == 14


def test_step_schedule(tmp_path):
  config = training.TrainConfig(
      model_dir=str(tmp_path), learning_rate=1e-3, lr_warmup_steps=0,
      lr_boundaries=(5, 8), lr_values=(1e-4, 1e-5))
  schedule = training.LearningRate(config)
  rates = []
  for step in range(1, 10):
    schedule.update(step, 1.0)
    rates.append(float(schedule.value))
  np.testing.assert_allclose(rates, [1e-3] * 4 + [1e-4] * 3 + [1e-5] * 2)


def test_warmup_and_budget_fraction_boundaries(tmp_path):
  config = training.TrainConfig(
      model_dir=str(tmp_path), learning_rate=1e-3, lr_warmup_steps=4,
      lr_boundaries=(0.5,), lr_values=(1e-4,), max_steps=100,
      max_time_s=60)
  schedule = training.LearningRate(config)
  schedule.start(1)
  rates = [float(schedule.value)]
  for step in range(1, 5):
    schedule.update(step, 1.0, elapsed_s=1.0)
    rates.append(float(schedule.value))
  np.testing.assert_allclose(rates, [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
  schedule.update(5, 1.0, elapsed_s=30.0)  # half the time budget
  assert float(schedule.value) == pytest.approx(1e-4)


def test_warm_start_copies_a_saved_model(tmp_path, image_dir):
  source = FactorizedPriorModel(num_filters=8, lmbda=0.05)
  source.freeze_for_coding()
  source.save(str(tmp_path / "source"))
  config = _config(tmp_path / "run", image_dir, lmbda=0.002,
                   init_from=str(tmp_path / "source"))
  trainer = training.Trainer(config)
  trainer.restore_or_initialize()
  for a, b in zip(trainer.model.trainable_variables,
                  source.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert trainer.model.config.lmbda == 0.002


def test_finalize_only_freezes_an_unfinished_run(tmp_path, image_dir):
  config = _config(tmp_path, image_dir, max_steps=100)

  def stop_at_step_3(trainer):
    if int(trainer.step) == 3:
      raise _Interrupt()

  with pytest.raises(_Interrupt):
    training.train(config, on_step=stop_at_step_3)
  recipe = training.finalize_only(config)
  assert recipe["steps"] == 3
  FactorizedPriorModel.load(config.final_dir)


def test_mixed_bfloat16_training_saves_a_float32_model(tmp_path, image_dir):
  config = _config(tmp_path, image_dir, max_steps=6,
                   precision="mixed_bfloat16")
  trainer = training.train(config)
  assert trainer.model.analysis.layers[0].compute_dtype == "bfloat16"
  final = FactorizedPriorModel.load(config.final_dir)
  assert final.precision == "float32"
  for saved, trained in zip(final.analysis.variables,
                            trainer.model.analysis.variables):
    np.testing.assert_allclose(saved.numpy(), trained.numpy())
  image = _smooth_image(32, 48, 3)
  string, latent_shape = final.compress(image)
  assert final.decompress(string, latent_shape, image.shape[:2],
                          3).shape == image.shape


def test_precision_auto_resolves_and_explicit_values_pass_through(tmp_path):
  assert training.resolve_precision("float32") == "float32"
  assert training.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
  config = training.TrainConfig(model_dir=str(tmp_path))
  assert config.precision in ("float32", "mixed_bfloat16")
