"""The factorized-prior model of Ballé, Laparra & Simoncelli (ICLR 2017).

Training (paper, Sec. 3): rounding is replaced by additive uniform noise,
y~ = g_a(x) + u with u ~ U(-1/2, 1/2), and the rate is the negative
log-likelihood of y~ under a learned per-channel density p (tfc's
`NoisyDeepFactorized`: a nonparametric density convolved with the same noise):

    loss = R + lambda * D,   R = -sum log2 p(y~) / num_pixels   (bits per pixel)
                             D = mean((x - g_s(y~))^2)          (0..255 scale)

Coding: `freeze_for_coding()` turns p into integer CDF tables (variables of the
model, saved with it) once; `compress` rounds y and range-codes it with those
tables, `decompress` decodes and applies g_s. The decoder never rebuilds the
tables from floating-point weights, so encoder and decoder agree bit for bit.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from balle import transforms
from balle.safe_write import write_file_atomic

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"


def default_num_filters(channels):
  """The paper's filter counts: 192 for RGB, 128 for grayscale (Sec. 4)."""
  return 192 if channels == 3 else 128


def setting(default, help, choices=None, repeated=False):  # pylint: disable=redefined-builtin
  """A configuration field declared once: its default and its help text.

  experiments/train.py makes one command-line flag of each field that has a
  help text (`choices` makes it an enum, `repeated` a repeatable flag). The
  help text is dataclass metadata, so it is not part of `asdict` (nor of the
  model id)."""
  return dataclasses.field(default=default, metadata=dict(
      help=help, choices=choices, repeated=repeated))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """What defines a model's architecture and training objective.

  The defaults are the paper's model (num_filters 0 = 192 for RGB, 128 for
  gray); the training recipe overrides num_filters (balle.training).
  """
  lmbda: float = setting(0.0130, "Rate-distortion weight lambda: loss = "
                         "bpp + lambda * MSE (0..255 scale).")
  channels: int = setting(3, "Image channels the model codes: 3 (RGB) or 1 "
                          "(gray; training images are converted to luma).",
                          choices=(1, 3))
  num_filters: int = setting(0, "Filters N per layer; 0: the paper's count, "
                             "192 for RGB, 128 for gray. Training defaults "
                             "to 128 for both: twice the steps per CPU-hour "
                             "of 192.")
  gdn_form: str = setting("paper", "GDN form: paper (x / sqrt(beta + sum "
                          "gamma x^2)) or simplified (x / (beta + sum gamma "
                          "|x|)).", choices=transforms.GDN_FORMS)
  name: str = ""  # "" selects bls2017-mse-<lmbda>

  def __post_init__(self):
    if self.channels not in (1, 3):
      raise ValueError(f"channels must be 1 or 3, got {self.channels}")
    if self.num_filters == 0:
      object.__setattr__(self, "num_filters",
                         default_num_filters(self.channels))
    if self.gdn_form not in transforms.GDN_FORMS:
      raise ValueError(f"gdn_form must be one of {transforms.GDN_FORMS}, "
                       f"got {self.gdn_form!r}")
    if not self.name:
      object.__setattr__(self, "name", f"bls2017-mse-{self.lmbda:.4f}")


def _latent_size(size):
  return -(-size // transforms.DOWNSAMPLING_FACTOR)


def replicate_edges_to_multiple(image, multiple):
  """Pads [H, W, C] at the bottom and right, repeating the last row and
  column, to multiples of `multiple`. The decoder crops the padding away;
  coding a smooth extension instead of the convolutions' zero padding keeps
  the borders of odd-sized images sharp at no cost in bits."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  image = tf.concat(
      [image, tf.repeat(image[-1:], (-height) % multiple, axis=0)], axis=0)
  return tf.concat(
      [image, tf.repeat(image[:, -1:], (-width) % multiple, axis=1)], axis=1)


def _smallest_exact(array):
  """`array` as float16 or int16 when that holds its values exactly."""
  for dtype in (np.float16, np.int16):
    if np.can_cast(dtype, array.dtype):  # float32 -> float16, int32 -> int16
      with np.errstate(over="ignore"):
        narrow = array.astype(dtype)
      if np.array_equal(narrow.astype(array.dtype), array):
        return narrow
  return array


class FactorizedPriorModel(tf.keras.Model):
  """g_a, g_s and the factorized prior, trained for bpp + lambda * MSE."""

  def __init__(self, config=None, precision="float32", **config_kwargs):
    """`precision` of the transforms ("float32" or "mixed_bfloat16") is a
    training-time speed choice, not part of the configuration: the weights
    are float32 either way, and models load and code in float32."""
    super().__init__(name="factorized_prior")
    self.config = config if config is not None else ModelConfig(**config_kwargs)
    self.precision = precision
    c = self.config
    self.analysis = transforms.AnalysisTransform(
        c.num_filters, c.gdn_form, precision)
    self.synthesis = transforms.SynthesisTransform(
        c.num_filters, c.channels, c.gdn_form, precision)
    self.prior = tfc.NoisyDeepFactorized(batch_shape=[c.num_filters])
    self.entropy_model = None  # Set by freeze_for_coding() or load().
    self.model_id = None
    self.build((None, None, None, c.channels))

  def build(self, input_shape):
    self.analysis.build(input_shape)
    self.synthesis.build(self.analysis.compute_output_shape(input_shape))
    # Not Model.build: it would trace `call` in a graph just to build layers.
    self.built = True

  def rate_distortion(self, images, training=True):
    """Returns (bpp, mse_255, loss) for float images on the 0..255 scale.

    With training=True the latents get additive uniform noise and bpp is the
    differentiable rate estimate; with training=False they are rounded and bpp
    is the ideal code length of the rounded latents under the prior.
    """
    entropy_model = tfc.ContinuousBatchedEntropyModel(
        self.prior, coding_rank=3, compression=False)
    images = tf.convert_to_tensor(images, tf.float32)
    latents = tf.cast(self.analysis(images / 255.), tf.float32)
    latents_hat, bits = entropy_model(latents, training=training)
    shape = tf.shape(images)
    reconstruction = tf.cast(self.synthesis(latents_hat),
                             tf.float32)[:, :shape[1], :shape[2], :]
    num_pixels = tf.cast(tf.reduce_prod(shape[:-1]), tf.float32)
    bpp = tf.reduce_sum(bits) / num_pixels
    mse_255 = tf.reduce_mean(
        tf.math.squared_difference(images, reconstruction * 255.))
    loss = bpp + self.config.lmbda * mse_255
    return bpp, mse_255, loss

  def call(self, images, training=False):
    return self.rate_distortion(images, training=training)

  # -- coding ---------------------------------------------------------------

  def coding_copy(self):
    """A float32 copy with the current weights, frozen for coding."""
    return self._frozen_copy(lambda weight: weight)

  def freeze_for_coding(self):
    """Builds the integer CDF tables from the trained prior (call once)."""
    if self.precision != "float32":
      raise ValueError("coding runs in float32: use coding_copy()")
    self.entropy_model = tfc.ContinuousBatchedEntropyModel(
        self.prior, coding_rank=3, compression=True)
    self.model_id = self._compute_model_id()

  def _require_frozen(self):
    if self.entropy_model is None:
      raise RuntimeError("the model has no coding tables: call "
                         "freeze_for_coding() after training, or load() a "
                         "saved model")

  @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
  def compress(self, image):
    """uint8 image [H, W, C] -> (range-coded latents, latent shape [h, w]).

    C is the model's channel count, or 1 for an RGB model: a grayscale image
    is then coded as RGB with R = G = B (the header keeps C = 1).
    """
    image = tf.cond(
        tf.shape(image)[2] < self.config.channels,
        lambda: tf.repeat(image, self.config.channels, axis=2),
        lambda: image)
    image = tf.ensure_shape(image, [None, None, self.config.channels])
    image = replicate_edges_to_multiple(image, transforms.DOWNSAMPLING_FACTOR)
    latents = self.analysis(tf.cast(image, tf.float32)[None] / 255.)
    strings = self.entropy_model.compress(latents)
    return strings[0], tf.shape(latents)[1:3]

  @tf.function(input_signature=[
      tf.TensorSpec([], tf.string),
      tf.TensorSpec([2], tf.int32),
      tf.TensorSpec([2], tf.int32),
      tf.TensorSpec([], tf.int32),
  ])
  def decompress(self, string, latent_shape, image_shape, channels):
    """(range-coded latents, [h, w], [H, W], C) -> uint8 image [H, W, C].

    C = 1 with an RGB model returns the rounded mean (R + G + B + 1) // 3.
    """
    latents = self.entropy_model.decompress(string[None], latent_shape)
    reconstruction = self.synthesis(latents)[0]
    reconstruction = reconstruction[:image_shape[0], :image_shape[1], :]
    image = tf.saturate_cast(tf.round(reconstruction * 255.), tf.uint8)
    if self.config.channels == 1:
      return image
    return tf.cond(
        channels < self.config.channels,
        lambda: tf.cast((tf.reduce_sum(tf.cast(image, tf.int32), axis=2,
                                       keepdims=True) + 1) // 3, tf.uint8),
        lambda: image)

  @staticmethod
  def latent_shape(height, width):
    """Latent height and width for an image of the given size."""
    return _latent_size(height), _latent_size(width)

  # -- persistence ----------------------------------------------------------

  def _named_weights(self):
    weights = {}
    for variable in self.variables:
      name = variable.name.split(":")[0]
      if name in weights:
        raise RuntimeError(f"duplicate variable name {name}")
      weights[name] = variable
    return weights

  def _compute_model_id(self):
    """8 bytes of SHA-256 over the configuration and every weight, in order."""
    digest = hashlib.sha256(
        json.dumps(dataclasses.asdict(self.config), sort_keys=True).encode())
    for name, variable in sorted(self._named_weights().items()):
      digest.update(name.encode())
      digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.digest()[:8]

  def half_precision_copy(self):
    """A new frozen model with every float weight of this one rounded to the
    nearest float16 value and coding tables built from the rounded prior.
    It codes slightly differently (measure it); `save` stores it in half the
    bytes."""
    return self._frozen_copy(
        lambda weight: tf.cast(tf.cast(weight, tf.float16), tf.float32))

  def _frozen_copy(self, convert):
    """A new float32 model with weights convert(w) of this one's, frozen."""
    copy = FactorizedPriorModel(self.config)
    weights = self._named_weights()
    for name, variable in copy._named_weights().items():
      variable.assign(convert(weights[name]))
    copy.freeze_for_coding()
    return copy

  def save(self, directory, overwrite=False):
    """Writes config.json and weights.npz into `directory` (frozen models).

    Each array is stored in the smallest dtype that holds it exactly
    (float16 after `half_precision_copy`, int16 for the CDF tables)."""
    self._require_frozen()
    os.makedirs(directory, exist_ok=True)
    config_path = os.path.join(directory, CONFIG_FILE)
    if os.path.exists(config_path) and not overwrite:
      raise FileExistsError(f"{directory} already holds a model; pass "
                            "overwrite=True to replace it")
    arrays = {name: _smallest_exact(v.numpy())
              for name, v in self._named_weights().items()}
    document = {
        "model": dataclasses.asdict(self.config),
        "entropy_model": self.entropy_model.get_config(),
        "model_id": self.model_id.hex(),
    }
    write_file_atomic(os.path.join(directory, WEIGHTS_FILE),
                      lambda f: np.savez(f, **arrays), overwrite=True)
    write_file_atomic(config_path,
                      lambda f: f.write(json.dumps(document, indent=2).encode()),
                      overwrite=True)

  @classmethod
  def load(cls, directory):
    """Loads a model saved by `save`; checks the weights against model_id."""
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.exists(config_path):
      raise FileNotFoundError(f"no model at {directory}: {CONFIG_FILE} missing")
    with open(config_path) as f:
      document = json.load(f)
    model = cls(ModelConfig(**document["model"]))
    entropy_config = dict(document["entropy_model"])
    entropy_config["prior_shape"] = tuple(entropy_config["prior_shape"])
    model.entropy_model = tfc.ContinuousBatchedEntropyModel(**entropy_config)
    named = model._named_weights()
    with np.load(os.path.join(directory, WEIGHTS_FILE)) as arrays:
      missing = set(named) ^ set(arrays.files)
      if missing:
        raise ValueError(f"{directory}: weights do not match the "
                         f"configuration ({sorted(missing)[:3]} ...)")
      for name, variable in named.items():
        variable.assign(arrays[name].astype(variable.dtype.as_numpy_dtype))
    model.model_id = model._compute_model_id()
    if model.model_id.hex() != document["model_id"]:
      raise ValueError(f"{directory}: weights are corrupted (model id "
                       f"{model.model_id.hex()} != {document['model_id']})")
    return model

