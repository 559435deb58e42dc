"""The training input pipelines: streamed from files vs decoded into memory.

  python benchmarks/input_pipeline.py --images=../shared/data/train
  # the issue's full size (8.0 GiB of decoded pixels, 4x the default budget):
  python benchmarks/input_pipeline.py --images=../shared/data/train \
      --num_large_images=1500 --large_budget_gib=2

Two parts:

1. Steps per second of the real training step (balle.training.trainer.Trainer
   with the trainer's defaults: N=128, 8x128² patches, --precision=auto) fed by
   each pipeline from the same --images, both built by
   balle.data.input_pipeline.training_data with --input_pipeline forced: images
   decoded into memory (balle.data.PatchSampler) and streamed from the files
   (balle.data.streaming.PatchStream). The two alternate in --blocks blocks of
   --steps timed steps, each after --warmup untimed steps (more than the batches
   a pipeline buffers while the other runs). Prints each one's mean steps/s and
   process CPU time per step (all threads: the step, decoding, patches), and the
   ratios stream / memory.
2. Peak memory of streaming: --num_large_images synthetic photo-like
   1600x1200 JPEGs (made once into --large_dir, reused), whose decoded size
   exceeds --large_budget_gib many times, trained on for --large_steps steps
   by training.train with the defaults except --memory_budget_gib (so the
   trainer chooses to stream) in a child process, from start to the saved
   final model. Prints the pipeline chosen, the seconds from the child's
   start to its first step, its steps/s and its peak RSS (getrusage).

Timings move with other work on the machine; the parts print the CPU model
and the load average, and the interleaving of part 1 makes background load
hit both pipelines alike.
"""

import json
import logging as std_logging
import os
import resource
import subprocess
import sys
import tempfile
import time

_START_S = time.time()

# pylint: disable=g-import-not-at-top
from absl import app
from absl import flags
import numpy as np
from PIL import Image

from balle.io.safe_write import write_file_atomic

flags.DEFINE_list("images", [], "Training images of part 1 (folders or "
                  "globs); none: part 1 is skipped.")
flags.DEFINE_integer("blocks", 3, "Blocks per pipeline, alternated.")
flags.DEFINE_integer("warmup", 15, "Untimed steps at each block start.")
flags.DEFINE_integer("steps", 40, "Timed steps per block.")
flags.DEFINE_integer("num_large_images", 150, "Synthetic 1600x1200 JPEGs of "
                     "part 2 (0: skip part 2).")
flags.DEFINE_float("large_budget_gib", 0.1, "--memory_budget_gib of part 2.")
flags.DEFINE_integer("large_steps", 100, "Training steps of part 2.")
flags.DEFINE_string("large_dir", os.path.join(tempfile.gettempdir(),
                                              "balle-large-jpegs"),
                    "Where part 2's images are made (and kept).")
flags.DEFINE_string("child_model_dir", "", "Internal: run part 2's training "
                    "here in this process and print its figures as JSON.")
FLAGS = flags.FLAGS

LARGE_SIZE = (1600, 1200)  # width, height


def machine():
  """CPU model, core count and load average, for the printed figures."""
  model = "unknown CPU"
  with open("/proc/cpuinfo") as f:
    for line in f:
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  return (f"{model}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (other work on the machine slows both "
          f"pipelines)")


def train_config(model_dir, images, **settings):
  from balle.training import config as config_lib
  return config_lib.TrainConfig.create(model_dir=model_dir,
                                       train_glob=tuple(images), **settings)


def time_steps(trainer, iterator, warmup, steps):
  """(steps/s, process CPU s per step) of `steps` training steps on
  `iterator`, after `warmup` untimed ones. The CPU time (all threads:
  step, decoding, patches) hardly moves with other work on the machine."""
  for _ in range(warmup):
    trainer.train_on(next(iterator))
  start, start_cpu = time.perf_counter(), time.process_time()
  for _ in range(steps):
    trainer.train_on(next(iterator))
  return (steps / (time.perf_counter() - start),
          (time.process_time() - start_cpu) / steps)


def compare_pipelines(images):
  """Part 1: prints steps/s fed from memory and streamed."""
  from balle import data
  from balle.data import input_pipeline
  from balle.training import trainer as trainer_lib
  config = train_config(tempfile.mkdtemp(), images, num_validation=0)
  trainer = trainer_lib.Trainer(config)
  iterators, setup_s = {}, {}
  for pipeline in ("memory", "stream"):
    start = time.perf_counter()
    patches, _ = input_pipeline.training_data(
        config.train_glob, config.patchsize, config.batchsize,
        trainer.model.downsampling_factor, 0, seed=config.seed,
        pipeline=pipeline)
    iterators[pipeline] = iter(patches.dataset())
    next(iterators[pipeline])
    setup_s[pipeline] = time.perf_counter() - start
  rates = {name: [] for name in iterators}
  cpu_s = {name: [] for name in iterators}
  for _ in range(FLAGS.blocks):
    for name, iterator in iterators.items():
      rate, cpu = time_steps(trainer, iterator, FLAGS.warmup, FLAGS.steps)
      rates[name].append(rate)
      cpu_s[name].append(cpu)
  means = {name: float(np.mean(r)) for name, r in rates.items()}
  cpu_means = {name: float(np.mean(c)) for name, c in cpu_s.items()}
  print(f"part 1: {len(data.expand_patterns(images))} images of {images}, "
        f"{config.batchsize}x{config.patchsize}² patches, N="
        f"{config.model.num_filters}, {config.precision}; mean of "
        f"{FLAGS.blocks} alternated blocks of {FLAGS.steps} steps after "
        f"{FLAGS.warmup}; {machine()}")
  for name in iterators:
    print(f"  {name:6s}: {means[name]:.2f} steps/s (blocks: "
          f"{', '.join(f'{r:.2f}' for r in rates[name])}), "
          f"{cpu_means[name]:.3f} CPU s per step; first batch after "
          f"{setup_s[name]:.1f} s")
  print(f"  stream / memory: {means['stream'] / means['memory']:.3f} x the "
        f"steps/s, {cpu_means['stream'] / cpu_means['memory']:.3f} x the "
        f"CPU time per step", flush=True)


def make_large_images(directory, count):
  """The paths of `count` photo-like 1600x1200 JPEGs (quality 90) in
  `directory`: smooth random color fields plus fine noise; those already
  there are kept."""
  os.makedirs(directory, exist_ok=True)
  width, height = LARGE_SIZE
  for i in range(count):
    path = os.path.join(directory, f"large_{i:04d}.jpg")
    if os.path.exists(path):
      continue
    rng = np.random.default_rng(i)
    coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    with Image.fromarray(coarse) as small:
      field = np.asarray(small.resize(LARGE_SIZE, Image.BICUBIC), np.int16)
    noise = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    pixels = np.clip(field + noise, 0, 255).astype(np.uint8)
    write_file_atomic(path, lambda f, pixels=pixels: Image.fromarray(
        pixels).save(f, format="JPEG", quality=90))
  return sorted(os.path.join(directory, f"large_{i:04d}.jpg")
                for i in range(count))


def run_large(model_dir):
  """Part 2's child: trains on --large_dir, prints its figures as JSON."""
  from balle import training
  choices = []

  class _Choice(std_logging.Handler):
    def emit(self, record):
      if record.getMessage().startswith("input pipeline:"):
        choices.append(record.getMessage())

  std_logging.getLogger("absl").addHandler(_Choice())
  files = make_large_images(FLAGS.large_dir, FLAGS.num_large_images)
  config = train_config(model_dir, files,
                        memory_budget_gib=FLAGS.large_budget_gib,
                        max_steps=FLAGS.large_steps)
  figures = {}

  def on_step(trainer):
    step = int(trainer.step)
    if step == 1:
      figures["first_step_s"] = time.time() - _START_S
      figures["first_step_cpu_s"] = time.process_time()
      figures["first_step_at"] = time.perf_counter()
    if step == config.max_steps:
      figures["steps_per_s"] = (step - 1) / (
          time.perf_counter() - figures["first_step_at"])
      figures["training_peak_rss_gib"] = _peak_rss_gib(resource.RUSAGE_SELF)

  training.train(config, on_step=on_step)
  del figures["first_step_at"]
  figures["peak_rss_gib"] = _peak_rss_gib(resource.RUSAGE_SELF)
  figures["pipeline"] = choices[-1] if choices else "?"
  print(json.dumps(figures))


def _peak_rss_gib(who):
  return resource.getrusage(who).ru_maxrss * 1024 / 2 ** 30  # KiB on Linux


def peak_memory_of_streaming():
  """Part 2: makes the images, runs the child, prints its figures."""
  start = time.perf_counter()
  files = make_large_images(FLAGS.large_dir, FLAGS.num_large_images)
  make_s = time.perf_counter() - start
  decoded_gib = len(files) * LARGE_SIZE[0] * LARGE_SIZE[1] * 3 / 2 ** 30
  command = [sys.executable, os.path.abspath(__file__),
             f"--child_model_dir={tempfile.mkdtemp()}",
             f"--large_dir={FLAGS.large_dir}",
             f"--num_large_images={FLAGS.num_large_images}",
             f"--large_budget_gib={FLAGS.large_budget_gib}",
             f"--large_steps={FLAGS.large_steps}"]
  result = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                          check=True)
  figures = json.loads(result.stdout.strip().splitlines()[-1])
  print(f"part 2: {len(files)} synthetic {LARGE_SIZE[0]}x{LARGE_SIZE[1]} "
        f"JPEGs in {FLAGS.large_dir} (made or found in {make_s:.0f} s), "
        f"{decoded_gib:.2f} GiB decoded = "
        f"{decoded_gib / FLAGS.large_budget_gib:.1f}x --memory_budget_gib="
        f"{FLAGS.large_budget_gib:g}; training.train with the defaults "
        f"otherwise, {FLAGS.large_steps} steps; {machine()}")
  print(f"  {figures['pipeline']}")
  print(f"  first step {figures['first_step_s']:.1f} s after the process "
        f"started ({figures['first_step_cpu_s']:.1f} CPU s); "
        f"{figures['steps_per_s']:.2f} steps/s after it")
  print(f"  peak RSS: {figures['training_peak_rss_gib']:.2f} GiB at the last "
        f"step, {figures['peak_rss_gib']:.2f} GiB with the final model "
        f"saved (getrusage of the child: "
        f"{_peak_rss_gib(resource.RUSAGE_CHILDREN):.2f} GiB)", flush=True)


def main(argv):
  del argv
  if FLAGS.child_model_dir:
    run_large(FLAGS.child_model_dir)
    return
  if FLAGS.images:
    compare_pipelines(FLAGS.images)
  if FLAGS.num_large_images:
    peak_memory_of_streaming()


if __name__ == "__main__":
  app.run(main)
