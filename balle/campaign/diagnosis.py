"""The campaign's diagnosis: which lever moves the rate-distortion curve
(issue 20), measured on a yardstick that can see 0.1 dB.

An **arm** is a fine-tune of the campaign anchor (`campaign/anchor`) for a
fixed number of steps with the plan's flags and one change (`ARMS`). Each
arm is run with two seeds or more; the spread between seeds is the noise
floor that a difference between arms must beat.

The **yardstick** is a fixed set of `YARDSTICK_SIZE` training-source
photographs, held out of every run from now on (never Kodak, never the
held-out test photographs), chosen per source folder by the smallest
SHA-256 of "yardstick:" + file name (`choose_yardstick`), so that it does
not depend on listing order. Each image is coded for real into a whole
.balle file and decoded. An arm's figure is its rate-distortion loss there,

    J = mean bpp + lambda * mean MSE        (MSE on the 0..255 scale),

the objective every arm minimizes. Arms land at slightly different rates;
at equal rate a change dJ is a change of MSE of dJ / lambda, i.e. of

    dPSNR ~= -10 / ln 10 * dJ / (lambda * MSE)   dB
    (`db_at_equal_rate`)

to first order, which is how the table states each arm's gain in dB.
"""

import dataclasses
import hashlib
import json
import math
import os
import platform
import subprocess
import time

import numpy as np

from balle.io.safe_write import write_file_atomic

YARDSTICK_FILE = "yardstick.txt"
DIAGNOSIS_FILE = "diagnosis.json"
YARDSTICK_SIZE = 48
# Images per source folder: at least this many from each source, the rest
# in proportion to the folders' sizes.
YARDSTICK_MIN_PER_SOURCE = 6
BASE_ARM = "base"


@dataclasses.dataclass(frozen=True)
class Arm:
  """One lever: the experiments.train flags it changes on top of the plan."""
  name: str
  question: str
  flags: dict


ARMS = {arm.name: arm for arm in (
    Arm(BASE_ARM, "the plan as it is (Adam 1e-4 constant, weight average "
        "0.999, 8x256^2, mixed bfloat16 where the CPU has it)", {}),
    Arm("anneal", "learning rate decayed 1e-4 -> 3.2e-5 -> 1e-5 at 1/3 and "
        "2/3 of the arm", {"lr_schedule": "steps",
                           "lr_boundaries": "0.333,0.667",
                           "lr_values": "3.16e-5,1e-5"}),
    Arm("batch16", "16 patches per step at the same learning rate",
        {"batchsize": 16}),
    Arm("float32", "float32 transforms instead of mixed bfloat16",
        {"precision": "float32"}),
    Arm("downsample", "Balle's data recipe: each training photograph "
        "downsampled by a random factor before cropping",
        {"random_downsample": True}),
    Arm("rescale", "latents of the starting model rescaled by sqrt(lambda "
        "/ 0.025) at the warm start (balle.models.widen.rescale_latents), for "
        "arms at a higher lambda than the anchor's",
        {"init_latent_scale": "auto"}),
    Arm("latents192", "M = 192 latent channels at N = 128, the 64 new ones "
        "starting silent (balle.models.widen)", {"latent_channels": 192}),
    Arm("ste", "rounded latents with a straight-through gradient into g_s "
        "(noise stays for the rate)", {"decoder_latents": "rounded_ste"}),
)}


def arm(name):
  if name not in ARMS:
    raise ValueError(f"unknown arm {name!r} (known: {', '.join(ARMS)})")
  return ARMS[name]


def _source(path):
  """The source folder of a training file: its parent folder's path."""
  return os.path.dirname(os.path.normpath(path))


def _yardstick_hash(path):
  return hashlib.sha256(
      ("yardstick:" + os.path.basename(path)).encode()).hexdigest()


def choose_yardstick(files, size=YARDSTICK_SIZE,
                     min_per_source=YARDSTICK_MIN_PER_SOURCE):
  """`size` of `files`, at least `min_per_source` per source folder (or all
  of a smaller folder), the rest shared in proportion to the folders'
  sizes; within a folder those of smallest `_yardstick_hash`. Sorted."""
  sources = {}
  for path in files:
    sources.setdefault(_source(path), []).append(path)
  if len(files) <= size:
    raise ValueError(f"{len(files)} training files cannot spare a "
                     f"yardstick of {size}")
  quota = {s: min(len(f), min_per_source) for s, f in sources.items()}
  while sum(quota.values()) < size:
    # Next image to the folder furthest below its proportional share.
    share = {s: size * len(f) / len(files) - quota[s]
             for s, f in sources.items() if quota[s] < len(f)}
    quota[max(sorted(share), key=share.get)] += 1
  chosen = []
  for source, paths in sources.items():
    chosen += sorted(paths, key=_yardstick_hash)[:quota[source]]
  return sorted(chosen)


def write_yardstick(directory, files):
  path = os.path.join(directory, YARDSTICK_FILE)
  if os.path.exists(path):
    raise FileExistsError(f"{path} exists: the yardstick is fixed once")
  text = "".join(p + "\n" for p in files)
  write_file_atomic(path, lambda f: f.write(text.encode()))
  return path


def read_yardstick(directory):
  path = os.path.join(directory, YARDSTICK_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no yardstick in {directory}: run "
                            "`python -m experiments.diagnose yardstick` once")
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def measure(model, images, lmbda):
  """Real coding of `images` (uint8 arrays) by a frozen model
  (`validation.coded_figures`): means of bpp (from the file size), MSE and
  PSNR, and J = bpp + lambda MSE."""
  from balle.training import validation  # pylint: disable=g-import-not-at-top
  bpps, mses, psnrs = validation.coded_figures(model, images)
  bpp, mse = float(np.mean(bpps)), float(np.mean(mses))
  return {"images": len(images), "bpp": bpp, "mse_255": mse,
          "psnr_db": float(np.mean(psnrs)), "loss": bpp + lmbda * mse}


def db_at_equal_rate(loss, base_loss, lmbda, base_mse):
  """First-order PSNR change at equal rate of a change of J (module doc)."""
  return -10 / math.log(10) * (loss - base_loss) / (lmbda * base_mse)


def machine():
  """CPU model and whether it has native bfloat16, for the record."""
  model, flags = platform.processor() or "unknown CPU", ""
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True,
                          check=False).stdout
    for line in text.splitlines():
      if line.startswith("Model name:"):
        model = line.split(":", 1)[1].strip()
      if line.startswith("Flags:"):
        flags = line
  except OSError:
    pass
  bf16 = " avx512_bf16" in flags or " amx_bf16" in flags
  return f"{model}, {os.cpu_count()} cores, {'bf16' if bf16 else 'no bf16'}"


class Diagnosis:
  """The arms run so far (`diagnosis.json` in the campaign folder)."""

  def __init__(self, directory):
    self.directory = directory
    self.path = os.path.join(directory, DIAGNOSIS_FILE)
    self.records = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        self.records = json.load(f)["arms"]

  def find(self, name, seed, steps, lmbda):
    for record in self.records:
      if _key(record) == (name, seed, steps, lmbda):
        return record
    return None

  def add(self, record):
    self.records = [r for r in self.records if _key(r) != _key(record)]
    self.records.append(record)
    text = json.dumps({"arms": self.records}, indent=1) + "\n"
    write_file_atomic(self.path, lambda f: f.write(text.encode()),
                      overwrite=True)

  def markdown_table(self):
    """One row per run and one per arm (mean over seeds), with the change
    against the base arm at the same steps in J and in dB at equal rate,
    and the seed spread (the noise floor) of each arm with 2+ seeds."""
    lines = ["| lambda | arm | seed | steps | Gpix | wall min | machine | "
             "yardstick bpp / PSNR dB | J = bpp + lambda MSE | dJ vs base | "
             "dB at equal rate vs base |",
             "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    groups = {}
    for r in self.records:
      groups.setdefault((r["steps"], r["lmbda"], r["arm"]), []).append(r)
    for (steps, lmbda, name), runs in sorted(
        groups.items(), key=lambda item: (item[0][1], item[0][0],
                                          item[0][2] != BASE_ARM, item[0][2])):
      base = groups.get((steps, lmbda, BASE_ARM))
      base_loss = np.mean([r["yardstick"]["loss"] for r in base]) if base \
          else None
      base_mse = np.mean([r["yardstick"]["mse_255"] for r in base]) if base \
          else None
      for r in sorted(runs, key=lambda r: r["seed"]):
        y = r["yardstick"]
        lines.append(
            f"| {lmbda:g} | {name} | {r['seed']} | {steps:,} | {r['gpix']:.2f} | "
            f"{r['wall_time_s'] / 60:.1f} | {r['machine']} | "
            f"{y['bpp']:.4f} / {y['psnr_db']:.3f} | {y['loss']:.4f} | "
            + _delta_cells(y["loss"], base_loss, lmbda, base_mse))
      if len(runs) > 1:
        losses = [r["yardstick"]["loss"] for r in runs]
        spread = (max(losses) - min(losses))
        lines.append(
            f"| {lmbda:g} | **{name}, mean of {len(runs)}** | | | | | | | "
            f"{np.mean(losses):.4f} (seed spread {spread:.4f}, "
            f"{abs(db_at_equal_rate(spread, 0, lmbda, base_mse or 1)):.3f} "
            f"dB) | " + _delta_cells(np.mean(losses), base_loss, lmbda,
                                       base_mse))
    return "\n".join(lines)


def _key(record):
  return record["arm"], record["seed"], record["steps"], record["lmbda"]


def _delta_cells(loss, base_loss, lmbda, base_mse):
  if base_loss is None:
    return "- | - |"
  return (f"{loss - base_loss:+.4f} | "
          f"{db_at_equal_rate(loss, base_loss, lmbda, base_mse):+.3f} |")


def record(name, seed, steps, lmbda, flags, recipe, yardstick):
  """A diagnosis.json record of a finished arm."""
  batch = int(flags.get("batchsize", 8))
  patch = int(flags.get("patchsize", 256))
  return {"arm": name, "seed": seed, "steps": steps, "lmbda": lmbda,
          "gpix": steps * batch * patch ** 2 / 1e9,
          "wall_time_s": recipe["wall_time_s"], "machine": machine(),
          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
          "model_id": recipe["model_id"], "flags": flags,
          "yardstick": yardstick}
