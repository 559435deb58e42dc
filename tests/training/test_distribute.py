"""Training under tf.distribute strategies (balle/training/distribute.py): two
replicas take the step one device takes on the same batch, checkpoints move
between strategies, and two worker processes train a model together.

Logical CPU devices and collectives are configured once per process, so
each test runs TensorFlow in subprocesses of its own."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from balle.coding import codec
from balle.models.bls2017 import FactorizedPriorModel
from conftest import REPOSITORY
from conftest import TESTS
from conftest import smooth_image

HERE = os.path.dirname(os.path.abspath(__file__))  # this module, for children
RESULTS_FILE = "results.json"
TIMEOUT_S = 1800  # a guard against a hang, far above the ~1 min a test
# takes on an idle machine


def _start(args, log_path, cwd=None, **variables):
  """A Python process with the repository, conftest and this module
  importable, its output in the file `log_path` (a pipe nobody reads while
  it runs can fill up and stop it)."""
  path = [REPOSITORY, TESTS, HERE, os.environ.get("PYTHONPATH", "")]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=os.pathsep.join(path), **variables)
  with open(log_path, "w") as log:
    return subprocess.Popen([sys.executable] + args, cwd=cwd, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def _finish(process, log_path):
  """Waits for `process` (killed on timeout); returns its output."""
  try:
    process.wait(timeout=TIMEOUT_S)
  finally:
    process.kill()
  with open(log_path) as f:
    output = f.read()
  assert process.returncode == 0, output[-3000:]
  return output


def _write_images(directory, count=4):
  os.makedirs(directory)
  for i in range(count):
    Image.fromarray(smooth_image(48, 64, seed=i)).save(
        os.path.join(directory, f"im_{i}.png"))


def compare_one_and_two_replicas(work_dir):
  """Run in a subprocess: trains the same three batches with the default
  strategy and with two logical CPU devices from the same state, compares
  their clipped gradients, then moves the mirrored run's checkpoint to one
  device and back; writes the figures to RESULTS_FILE in `work_dir`.
  (Mixed bfloat16 and the streaming pipeline under a strategy: the
  two-worker test.)"""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_compression.python.ops import math_ops  # pylint: disable=g-import-not-at-top
  from balle import data  # pylint: disable=g-import-not-at-top
  from balle.training import config as train_config  # pylint: disable=g-import-not-at-top
  from balle.training import distribute  # pylint: disable=g-import-not-at-top
  from balle.training.trainer import Trainer  # pylint: disable=g-import-not-at-top

  distribute.create_strategy("mirrored", 2)  # before TensorFlow's first op
  tf.keras.utils.set_random_seed(0)  # Keras's initializers draw from Python's
  perturb_and_apply = math_ops.perturb_and_apply

  def fixed_noise(f, x, *args, expected_grads=True):
    """The same "uniform noise" for a patch on whichever replica it is:
    a fixed pattern over one patch's latents, the same for every patch."""
    size = tf.reduce_prod(tf.shape(x)[1:])
    pattern = tf.sin(tf.cast(tf.range(size), x.dtype))
    noise = 0.45 * tf.broadcast_to(tf.reshape(pattern, tf.shape(x)[1:]),
                                   tf.shape(x))
    return perturb_and_apply(f, x, *args, u=noise,
                             expected_grads=expected_grads)

  math_ops.perturb_and_apply = fixed_noise
  images = [smooth_image(48, 64, seed=10 + i) for i in range(3)]

  def make_trainer(strategy, name, **settings):
    config = train_config.TrainConfig.create(**{
        "model_dir": os.path.join(work_dir, name), "train_glob": ("unused",),
        "num_filters": 8, "patchsize": 32, "batchsize": 4,
        "learning_rate": 1e-3, "lr_schedule": "constant",
        "lr_warmup_steps": 0, "ema_decay": 0.5,
        "prior_lr_scale": 0.5, "precision": "float32",
        "strategy": strategy,
        "cpu_devices": 2 if strategy == "mirrored" else 0, **settings})
    result = Trainer(config)
    result.restore_or_initialize()
    result.start_schedule()
    return result

  def distributed_batches(trainer):
    """The batches of a new sampler: the same on one device and two."""
    return iter(trainer.distributed(data.PatchSampler(images, 32, 4)))

  def train(trainer, steps=3):
    return [trainer.train_on(batch) for batch, _ in
            zip(distributed_batches(trainer), range(steps))]

  def clipped_gradients(trainer, clip_norm):
    """The gradients of the first batch as the step applies them."""
    trainer.config.clip_norm = clip_norm
    batch = next(distributed_batches(trainer))
    outputs = trainer.strategy.run(trainer._gradients, (batch,))  # pylint: disable=protected-access
    return distribute.first_replica(trainer.strategy, outputs)[-1]

  def largest_difference(a, b):
    """(max |x - y| / max |x|, the name of x) of the pair of state variables
    (weights, Adam's moments, averages) of trainers a and b where that is
    largest."""
    return max((float(np.max(np.abs(x.numpy() - y.numpy())) /
                      max(np.max(np.abs(x.numpy())), 1e-30)), x.name)
               for x, y in zip(a.state_variables(), b.state_variables()))

  one = make_trainer("default", "one")
  two = make_trainer("mirrored", "two")
  for target, source in zip(two.state_variables(), one.state_variables()):
    target.assign(source)
  clip_norm = 0.01
  gradients = [clipped_gradients(t, clip_norm) for t in (one, two)]
  results = {
      "replicas": two.strategy.num_replicas_in_sync,
      "clipped_norms": [float(tf.linalg.global_norm(g)) for g in gradients],
      "gradient_difference": max(
          float(tf.reduce_max(tf.abs(a - b))) / clip_norm
          for a, b in zip(*gradients))}
  for trainer in (one, two):
    trainer.config.clip_norm = 0  # Adam's moments then see the scale
  results.update({"one_device": train(one), "two_devices": train(two),
                  "state_difference": largest_difference(one, two),
                  "steps": [int(one.step), int(two.step)]})
  two.save_checkpoint()
  on_one = make_trainer("default", "two")  # the mirrored run's model_dir
  results["restored_difference"] = largest_difference(two, on_one)
  # A change that the mirrored trainer below can only get from the file.
  on_one.average.averages[0].assign_add(on_one.average.averages[0])
  on_one.save_checkpoint()
  back = make_trainer("mirrored", "two")
  results["back_difference"] = largest_difference(on_one, back)
  with open(os.path.join(work_dir, RESULTS_FILE), "w") as f:
    json.dump(results, f)


@pytest.fixture(scope="module")
def replica_comparison(tmp_path_factory):
  """(process, log file, work_dir) of `compare_one_and_two_replicas`,
  started once. The
  two-worker test asks for it too, so that it runs beside the workers,
  which leave a core idle while the chief freezes the model (the time
  budget of CI)."""
  work_dir = str(tmp_path_factory.mktemp("replicas"))
  log_path = os.path.join(work_dir, "log.txt")
  process = _start(["-c", "import test_distribute; test_distribute."
                    f"compare_one_and_two_replicas({work_dir!r})"], log_path)
  yield process, log_path, work_dir
  process.kill()


def _free_ports(count):
  """Ports on the loopback interface free at the time of the call."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _start_two_workers(tmp_path, flags):
  """[(process, log path)] of two localhost workers of experiments.train
  --strategy=multi_worker with `flags`, training on 4 images."""
  _write_images(str(tmp_path / "images"))
  workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
  command = [
      "-m", "experiments.train", "--strategy=multi_worker",
      "--train_glob=images", "--model_dir=run", "--num_filters=8",
      "--patchsize=32", "--batchsize=4", "--num_validation=0",
      "--lr_warmup_steps=0"] + flags
  processes = []
  for index in range(2):
    temp_dir = tmp_path / f"tmp_{index}"
    temp_dir.mkdir()
    tf_config = {"cluster": {"worker": workers},
                 "task": {"type": "worker", "index": index}}
    log_path = str(tmp_path / f"log_{index}.txt")
    processes.append((_start(command, log_path, cwd=tmp_path,
                             TF_CONFIG=json.dumps(tf_config),
                             TMPDIR=str(temp_dir)), log_path))
  return processes


@pytest.mark.usefixtures("replica_comparison")
def test_two_workers_train_and_the_chief_writes_the_model(tmp_path):
  """Two workers on localhost, each streaming its half of the files."""
  processes = _start_two_workers(tmp_path, [
      "--max_steps=4", "--log_every=2", "--checkpoint_every=2",
      "--ema_decay=0.5", "--clip_norm=1", "--precision=mixed_bfloat16",
      "--input_pipeline=stream"])
  try:
    logs = [_finish(*process) for process in processes]
  finally:
    for process, _ in processes:
      process.kill()
  run = tmp_path / "run"
  final = FactorizedPriorModel.load(str(run / "final"))
  image = smooth_image(40, 56)
  decoded = codec.decompress_image(codec.compress_image(final, image), final)
  assert decoded.shape == image.shape
  with open(run / "final" / "recipe.json") as f:
    recipe = json.load(f)
  assert recipe["steps"] == 4 and recipe["flags"]["strategy"] == "multi_worker"
  # The chief's summaries (one session, one file) and checkpoints only; the
  # other worker's temporary checkpoints are gone.
  files = os.listdir(run)
  assert len([f for f in files if "tfevents" in f]) == 1
  assert {f for f in files if "tfevents" not in f} == {"checkpoints", "final"}
  assert "ckpt-4.index" in os.listdir(run / "checkpoints")
  assert not [f for f in os.listdir(tmp_path / "tmp_1")
              if f.startswith("balle-")]
  assert "final model" in logs[0] and "final model" not in logs[1]
  # Both workers saw the same losses: the global batch's.
  lines = [[line.split("] ")[-1].split("  lr")[0] for line in log.splitlines()
            if "step 4  loss" in line] for log in logs]
  assert lines[0] and lines[0] == lines[1]


def test_a_lost_worker_stops_the_other_with_a_clear_error(tmp_path):
  """kill -9 of one worker: the chief stops instead of waiting forever,
  writes no checkpoint it cannot (the save needs both), and says how to
  resume. How TensorFlow notices the loss (a heartbeat timeout,
  a closed socket, ...) and its words for it vary with timing: only the
  project's behaviour is asserted."""
  (chief, chief_log), (worker, _) = _start_two_workers(tmp_path, [
      "--max_steps=100000", "--log_every=1", "--checkpoint_every=2",
      "--precision=float32"])
  try:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and chief.poll() is None:
      with open(chief_log) as f:
        if "step 3  loss" in f.read():
          break
      time.sleep(0.5)
    worker.kill()
    chief.wait(timeout=TIMEOUT_S)
  finally:
    chief.kill()
    worker.kill()
  with open(chief_log) as f:
    output = f.read()
  assert chief.returncode == 1, output[-3000:]
  assert "train: a worker of the cluster stopped at step" in output
  assert "start every worker again with the same flags" in output
  assert "Traceback" not in output


def test_two_replicas_take_the_step_of_one_device(replica_comparison):
  process, log_path, work_dir = replica_comparison
  _finish(process, log_path)
  with open(os.path.join(work_dir, RESULTS_FILE)) as f:
    results = json.load(f)
  assert results["replicas"] == 2
  # Clipping acts on the all-reduced gradients: those of one device.
  np.testing.assert_allclose(results["clipped_norms"], [0.01, 0.01],
                             rtol=1e-5)
  assert results["gradient_difference"] < 1e-5
  # (bpp, mse_255, loss) of each step, the global batch's on both.
  np.testing.assert_allclose(results["two_devices"], results["one_device"],
                             rtol=1e-5)
  assert results["steps"] == [3, 3]
  # Weights, Adam's moments and the average, each relative to its largest
  # element: Adam's division by sqrt(v) amplifies the summation-order
  # differences of near-zero gradients (~1e-4 here); a gradient off by the
  # replica count would put m and v off by 100 % and more.
  assert results["state_difference"][0] < 1e-3, results["state_difference"]
  assert results["restored_difference"][0] == 0
  assert results["back_difference"][0] == 0
