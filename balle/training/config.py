"""The settings of a training run (`TrainConfig`), each declared once with
its default and help text; experiments/train.py makes one flag per setting
(`setting_fields`). The model's own settings (lambda, N, architecture, ...)
live in `balle.models.compression_model.ModelConfig`, nested here as `model`.

Options beyond the paper's recipe, all off by default: an exponential moving
average of the weights (`ema_decay`), a learning-rate multiplier for the
prior (`prior_lr_scale`), rounded latents with a straight-through gradient
into g_s (`decoder_latents`), randomly downsampled patches
(`random_downsample`) and a decoder-only fine-tune on rounded latents
(`finetune_decoder_rounded`).
"""

import dataclasses
import os

import tensorflow as tf

from balle.data.input_pipeline import PIPELINES as INPUT_PIPELINES
from balle.models.compression_model import ModelConfig
from balle.models.compression_model import setting
from balle.training.distribute import STRATEGIES

LR_SCHEDULES = ("constant", "steps", "plateau")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
DECODER_LATENTS = ("noisy", "rounded_ste")
RECIPE_FILE = "recipe.json"
# Filters N of the models the recipe trains, RGB included, where ModelConfig
# defaults to the paper's 192: a step at N = 192 costs about 2x one at
# N = 128 on a CPU, so on the budgets here N = 128 gets twice the updates
# (docs/training.md). --num_filters=0 selects the paper's count.
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
  input_pipeline: str = setting(
      "auto", "Training images decoded once into memory (memory), or "
      "decoded from the files as tf.data streams patches (stream); auto: in "
      "memory if their decoded pixels fit in --memory_budget_gib.",
      choices=INPUT_PIPELINES)
  memory_budget_gib: float = setting(
      2.0, "Largest decoded size in GiB (2^30 bytes, from the image "
      "headers) of training images held in memory (--input_pipeline=auto).")
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
  decoder_latents: str = setting(
      "noisy", "What g_s decodes in training: noisy (latents + uniform "
      "noise, the paper) or rounded_ste (rounded as at coding time, with a "
      "straight-through gradient); the rate uses the noisy latents either "
      "way.", choices=DECODER_LATENTS)
  random_downsample: bool = setting(
      False, "Downsample each patch's source region by a random factor, "
      "log-uniform in [1, 4] and at most the image's shorter side over the "
      "patch size, before cropping (the paper's data recipe: less JPEG "
      "blocking and sensor noise, denser detail).")
  finetune_decoder_rounded: bool = setting(
      False, "Train only g_s, on rounded latents as at coding time, with g_a "
      "and the prior frozen (a final fine-tune, e.g. after --init_from).")
  precision: str = setting(
      "auto", "Arithmetic of the transforms while training; auto: on GPUs "
      "mixed_bfloat16 from compute capability 8.0 (Ampere), mixed_float16 "
      "(with dynamic loss scaling) from 7.0, else float32; on CPUs "
      "mixed_bfloat16 with avx512_bf16/amx_bf16, else float32. Weights and "
      "the saved model are float32.", choices=PRECISIONS)
  strategy: str = setting(
      "default", "How steps are spread over devices "
      "(balle.training.distribute): default, one device; mirrored, "
      "tf.distribute.MirroredStrategy over the local GPUs or --cpu_devices logical CPUs; multi_worker, "
      "MultiWorkerMirroredStrategy over the workers TF_CONFIG lists, each "
      "started with the same flags, the chief writing --model_dir. The "
      "--batchsize patches of a step are split over the replicas; the step "
      "is the one a single device would take on them.", choices=STRATEGIES)
  cpu_devices: int = setting(0, "With --strategy=mirrored: split the CPU "
                             "into this many logical devices and mirror "
                             "over them (machines without GPUs, tests; 0: "
                             "the GPUs).")
  init_from: str = setting("", "Saved model folder to warm-start from "
                           "(fine-tuning another lambda).")
  init_latent_scale: float = setting(
      1.0, "Multiply the --init_from model's latents by this factor at the "
      "warm start (balle.models.widen.rescale_latents: the reconstruction "
      "stays, rounding gets finer); sqrt(new lambda / old lambda) for a "
      "fine-tune to a higher rate (1: off).")
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
    if self.decoder_latents not in DECODER_LATENTS:
      raise ValueError(f"decoder_latents must be one of {DECODER_LATENTS}")
    if self.input_pipeline not in INPUT_PIPELINES:
      raise ValueError(f"input_pipeline must be one of {INPUT_PIPELINES}")
    if self.memory_budget_gib < 0:
      raise ValueError("memory_budget_gib must be >= 0")
    if self.lr_schedule == "steps":
      if len(self.lr_boundaries) != len(self.lr_values):
        raise ValueError("lr_boundaries and lr_values need the same length")
      if list(self.lr_boundaries) != sorted(self.lr_boundaries):
        raise ValueError("lr_boundaries must be increasing")
    if not 0 <= self.ema_decay < 1:
      raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
    if self.prior_lr_scale < 0:
      raise ValueError("prior_lr_scale must be >= 0")
    if self.init_latent_scale <= 0:
      raise ValueError("init_latent_scale must be > 0")
    if self.divergence_patience < 1:
      raise ValueError("divergence_patience must be >= 1")
    if self.strategy not in STRATEGIES:
      raise ValueError(f"strategy must be one of {STRATEGIES}")
    if self.cpu_devices < 0 or (self.cpu_devices and
                                self.strategy != "mirrored"):
      raise ValueError("cpu_devices must be >= 0, and is for "
                       "strategy=mirrored only")
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
  """"auto" -> on GPUs (all of them): "mixed_bfloat16" from compute
  capability 8.0, "mixed_float16" from 7.0 (tensor cores; the trainer then
  scales the loss), else "float32"; on a CPU-only machine "mixed_bfloat16"
  when the CPU has native bfloat16 instructions (avx512_bf16 or amx_bf16 in
  /proc/cpuinfo), else "float32". Other values pass through."""
  if precision != "auto":
    return precision
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    capability = min(
        tuple(tf.config.experimental.get_device_details(gpu).get(
            "compute_capability", (0, 0))) for gpu in gpus)
    if capability >= (8, 0):
      return "mixed_bfloat16"
    return "mixed_float16" if capability >= (7, 0) else "float32"
  try:
    with open("/proc/cpuinfo") as f:
      flags = f.read()
  except OSError:
    return "float32"
  return ("mixed_bfloat16" if " avx512_bf16" in flags or " amx_bf16" in flags
          else "float32")
