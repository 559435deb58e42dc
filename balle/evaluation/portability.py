"""Decoding the same .balle files as other machines would: in fresh
processes under TensorFlow's other kernel paths and thread counts.

A file decodes on every machine when whatever chooses a CDF or a symbol is
computed exactly (balle.models.integer_network). Machines differ in the kernels
TensorFlow picks: oneDNN with the CPU's widest instruction set, oneDNN
limited to an older one (what an older CPU gets), TensorFlow's own Eigen
kernels (oneDNN off, as on ARM or in other builds), and the thread count,
which changes how sums are split. `KERNEL_PATHS` plays each on this machine
by its environment variable; `decode_under` decodes files in a subprocess
so set, and `compare` checks the decoded symbols (the latents y, which the
range decoder can only reproduce with the encoder's CDFs) and the pixels
against a reference path.

    python -m balle.evaluation.portability JOBS.json OUTPUT_DIR --threads=N

is the subprocess: JOBS.json lists {"file", "model"} pairs; it writes
OUTPUT_DIR/results.json and each file's pixels as .npy.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

# name -> (environment variables, intra-op threads)
KERNEL_PATHS = {
    "oneDNN, 2 threads": ({}, 2),
    "oneDNN, 1 thread": ({}, 1),
    "Eigen (oneDNN off)": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, 2),
    "oneDNN SSE4.1": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, 2),
    "oneDNN AVX2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
}
REFERENCE_PATH = "oneDNN, 2 threads"
RESULTS_FILE = "results.json"


def decode_under(path_name, jobs, output_dir, timeout=3600):
  """Decodes `jobs` ([{"file", "model"}]: a .balle file and the model folder
  or shipped name that decodes it) in a fresh Python process on kernel
  path `path_name`; returns its results ({file: {"ok", "error",
  "symbols", "pixels"}})."""
  env_vars, threads = KERNEL_PATHS[path_name]
  os.makedirs(output_dir, exist_ok=True)
  jobs_path = os.path.join(output_dir, "jobs.json")
  with open(jobs_path, "w") as f:
    json.dump(jobs, f)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env_vars)
  for name in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA"):
    if name not in env_vars:
      env.pop(name, None)
  process = subprocess.run(
      [sys.executable, "-m", "balle.evaluation.portability", jobs_path,
       output_dir, f"--threads={threads}"], env=env, capture_output=True, text=True,
      timeout=timeout, check=False)
  if process.returncode:
    raise RuntimeError(f"the decoder on path {path_name!r} stopped "
                       f"(status {process.returncode}): "
                       f"{process.stderr.strip()[-2000:]}")
  with open(os.path.join(output_dir, RESULTS_FILE)) as f:
    return json.load(f)


def compare(reference, results):
  """{"failures": files that did not decode, "symbol_mismatches": files
  whose symbols differ from `reference`'s, "max_pixel_difference",
  "differing_pixels": share of pixel values that differ} over the files
  both decoded."""
  failures = sorted(f for f, r in results.items() if not r["ok"])
  mismatches, largest, differing, total = [], 0, 0, 0
  for name, result in results.items():
    expected = reference[name]
    if not (result["ok"] and expected["ok"]):
      continue
    if result["symbols"] != expected["symbols"]:
      mismatches.append(name)
    a = np.load(result["pixels"]).astype(np.int16)
    b = np.load(expected["pixels"]).astype(np.int16)
    difference = np.abs(a - b)
    largest = max(largest, int(difference.max(initial=0)))
    differing += int(np.count_nonzero(difference))
    total += difference.size
  return {"failures": failures, "symbol_mismatches": sorted(mismatches),
          "max_pixel_difference": largest,
          "differing_pixels": differing / total if total else 0.0}


def _decode_all(jobs, output_dir):
  """The subprocess's work: each job's symbols digest and pixels."""
  # Imported here: the parent needs no TensorFlow for this module.
  # pylint: disable=import-outside-toplevel
  from balle import pretrained
  from balle.coding import codec
  from balle.coding import file_format
  results = {}
  for index, job in enumerate(jobs):
    with open(job["file"], "rb") as f:
      data = f.read()
    result = {"ok": False, "error": "", "symbols": "", "pixels": ""}
    try:
      model = pretrained.resolve(job["model"])
      header, sections = file_format.unpack(data)
      decoder = codec.check_model(header, model)
      rects = codec.check_sections(header, sections, decoder)
      latents = decoder.tile_coder().decode_latents(
          sections, rects, header.height, header.width)
      pixels = codec.decompress_image(data, model)
      pixels_path = os.path.join(output_dir, f"{index}.npy")
      np.save(pixels_path, pixels)
      result.update(ok=True, pixels=pixels_path, symbols=hashlib.sha256(
          np.ascontiguousarray(latents, np.float32).tobytes()).hexdigest())
    except Exception as error:  # pylint: disable=broad-except
      # Any error is this file failing to decode on this path.
      result["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
    results[job["file"]] = result
  with open(os.path.join(output_dir, RESULTS_FILE), "w") as f:
    json.dump(results, f)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("jobs")
  parser.add_argument("output_dir")
  parser.add_argument("--threads", type=int, default=0)
  args = parser.parse_args(argv)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  with open(args.jobs) as f:
    _decode_all(json.load(f), args.output_dir)


if __name__ == "__main__":
  main()
