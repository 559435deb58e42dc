"""Training on several devices or machines with tf.distribute: the strategy
a run trains under (`create_strategy`), each replica's share of a batch
(`replica_batches`), which worker writes the run's files (`is_chief`,
`checkpoint_write_dir`), and figures every worker agrees on
(`mean_over_workers`, `same_on_all_workers`, `barrier`).

Training is data parallel and synchronous. Every replica holds the same weights
and computes the loss on its own B/R of the B patches of a global batch
(--batchsize); each replica's loss is a mean over its patches, so scaled by 1/R
and summed over the replicas it is the mean over the global batch, and so are
the gradients the strategy sums (balle.training.trainer.Trainer). R replicas
therefore take the step one device takes on the same B patches, up to the order
of float summation.

  default       TensorFlow's default strategy: one device, the trainer as it
                always was.
  mirrored      tf.distribute.MirroredStrategy over the local GPUs, or over
                `cpu_devices` logical CPU devices (tests, machines without
                GPUs).
  multi_worker  tf.distribute.MultiWorkerMirroredStrategy over the machines
                TF_CONFIG lists, every worker started with the same flags.
                The chief (task "chief", else worker 0) writes model_dir. The
                other workers take part in every checkpoint save, as
                TensorFlow asks, but into a temporary folder of their own
                that they delete right after; they write no summaries and no
                final model, and resume from the chief's checkpoints, so
                model_dir must be on storage every worker reads. When a
                worker dies the others stop (balle.training.WorkerLostError)
                and all are started again.

Each worker runs one input pipeline (the samplers' `dataset(input_context)`).
In memory (balle.data.PatchSampler) every worker holds all images, draws the
same global batches and keeps its share, so the batches do not depend on
the number of workers. Streamed (balle.data.streaming.PatchStream) each worker
decodes only its own shard of the files (InputContext.input_pipeline_id of
num_input_pipelines), so every file is decoded by one worker, and the
batches depend on the number of workers.
"""

import functools
import os
import tempfile

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


@functools.lru_cache(maxsize=None)
def create_strategy(name, cpu_devices=0):
  """The tf.distribute.Strategy named `name` (one of STRATEGIES), created
  once per process and arguments: TensorFlow configures devices and
  collectives once per process, before it first runs an op.

  `cpu_devices` > 0 (mirrored only) splits the CPU into that many logical
  devices and mirrors over them."""
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if cpu_devices:
      return tf.distribute.MirroredStrategy(configure_cpu_devices(cpu_devices))
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def configure_cpu_devices(count):
  """Splits the first CPU into `count` logical devices; returns their names.
  Must run before TensorFlow initializes its devices (its first op)."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count)
  except RuntimeError as error:
    raise RuntimeError(
        f"cannot split the CPU into {count} logical devices: TensorFlow has "
        f"initialized its devices already in this process") from error
  return [device.name for device in tf.config.list_logical_devices("CPU")]


def is_chief(strategy):
  """Whether this process writes the run's files: yes, except on the
  workers of a multi-worker run other than the chief (task "chief", or
  worker 0 when the cluster has no chief)."""
  resolver = strategy.cluster_resolver
  if resolver is None or resolver.task_type in (None, "chief"):
    return True
  has_chief = "chief" in resolver.cluster_spec().jobs
  return (resolver.task_type == "worker" and resolver.task_id == 0
          and not has_chief)


def num_workers(strategy):
  """Processes taking part in each step (the chief's and the workers')."""
  resolver = strategy.cluster_resolver
  if resolver is None:
    return 1
  jobs = resolver.cluster_spec().as_dict()
  return max(1, len(jobs.get("chief", [])) + len(jobs.get("worker", [])))


def checkpoint_write_dir(strategy, directory):
  """Where this process writes checkpoints: `directory` on the chief; on
  other workers a temporary folder of its own, not yet created, to delete
  after each save."""
  if is_chief(strategy):
    return directory
  resolver = strategy.cluster_resolver
  return os.path.join(tempfile.gettempdir(), f"balle-{resolver.task_type}-"
                      f"{resolver.task_id}-{os.getpid()}-checkpoints")


def replica_batches(strategy, dataset_fn, global_batch):
  """The batches of a global batch size `global_batch` distributed over the
  replicas; `dataset_fn(input_context)` gives the batches of one input
  pipeline's replicas (a sampler's `dataset`). With the default strategy,
  that dataset itself."""
  replicas = strategy.num_replicas_in_sync
  if global_batch % replicas:
    raise ValueError(f"a batch of {global_batch} does not split evenly over "
                     f"{replicas} replicas")
  return strategy.distribute_datasets_from_function(dataset_fn)


def first_replica(strategy, values):
  """The first local replica's part of each of `values` (a structure of
  results of strategy.run): the value of all replicas after an
  all-reduce."""
  return tf.nest.map_structure(
      lambda value: strategy.experimental_local_results(value)[0], values)


def mean_over_workers(strategy, value):
  """The mean of a number over the workers, so that every worker decides
  alike from a per-process measurement (the training clock); `value` itself
  with one worker."""
  if num_workers(strategy) == 1:
    return value
  return float(_mean_over_replicas(strategy)(tf.constant(value, tf.float64)))


def same_on_all_workers(strategy, value):
  """Whether every worker holds the same integer `value` (their mean of
  value squared is the square of their mean only then)."""
  mean = mean_over_workers(strategy, value)
  return mean * mean == mean_over_workers(strategy, value * value)


@functools.lru_cache(maxsize=None)
def _mean_over_replicas(strategy):
  """A tf.function: the mean of each replica's copy of a tensor (traced
  once; strategy.run outside a tf.function is slow)."""

  @tf.function
  def mean(value):
    return strategy.reduce(tf.distribute.ReduceOp.MEAN,
                           strategy.run(tf.identity, (value,)), axis=None)

  return mean


def barrier(strategy):
  """Returns once every worker has called it (at once with one worker)."""
  mean_over_workers(strategy, 0.0)
