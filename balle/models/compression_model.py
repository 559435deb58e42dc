"""What every compression model is, and the registry of architectures.

A model is a `CompressionModel`: transforms and entropy model(s) trained for
loss = R + lambda * D (`rate_distortion`, D named by `config.distortion`,
balle.models.losses), frozen for coding (`freeze_for_coding`: integer CDF
tables, saved with the model), then coding images to sections (entropy-coded
tensors with their shapes, the sections of a .balle file) and back. Its
configuration is a `ModelConfig` whose `architecture` names its class in the
registry (`register`, `model_class`); that name is also written in file headers.
`save` writes config.json + weights.npz, `load_model` reads them back into the
registered class.

training, codec, export, evaluation, campaign and pretrained use only this
interface. Tiled coding (balle.coding.codec) asks the model for its `tile_coder`
(balle.coding.tiling), which knows how the architecture's sections depend on
each other across tiles; the SavedModel codes one tile with the whole-image
`compress`/`decompress`, checking a file's sections with `section_shapes` and
`section_checks` first.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from balle.coding import file_format
from balle.io.safe_write import write_file_atomic
from balle.models import layers
from balle.models import losses
from balle.models import weight_storage

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
# The integer networks of a model whose decoding choices are exact
# (balle.models.integer_network), beside its float weights.
EXACT_FILE = "exact.npz"
# Architecture of models saved before config.json named it (and of every
# version-1 file).
DEFAULT_ARCHITECTURE = file_format.FACTORIZED_PRIOR
_REGISTRY = {}


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
  gray); the training recipe overrides num_filters (balle.training.config). The
  distortion belongs here, beside lambda: it is part of what the weights
  were trained for, and of the model's name and id. latent_channels is
  stored as 0 when M equals N (so the configuration of a model has one
  form); `num_latent_channels` is M either way.
  """
  lmbda: float = setting(0.0130, "Rate-distortion weight lambda: loss = "
                         "bpp + lambda * D (MSE: 0..255 scale).")
  channels: int = setting(3, "Image channels the model codes: 3 (RGB) or 1 "
                          "(gray; training images are converted to luma).",
                          choices=(1, 3))
  num_filters: int = setting(0, "Filters N per layer; 0: the paper's count, "
                             "192 for RGB, 128 for gray. Training defaults "
                             "to 128 for both: twice the steps per CPU-hour "
                             "of 192.")
  latent_channels: int = setting(0, "Channels M of the latents y (the last "
                                 "layer of g_a, the first of g_s); 0: the "
                                 "same as num_filters.")
  gdn_form: str = setting("paper", "GDN form: paper (x / sqrt(beta + sum "
                          "gamma x^2)) or simplified (x / (beta + sum gamma "
                          "|x|)).", choices=layers.GDN_FORMS)
  architecture: str = setting(DEFAULT_ARCHITECTURE, "Model architecture "
                              "(balle.models registry): bls2017, "
                              "the factorized prior, or bmshj2018, the scale "
                              "hyperprior.")
  distortion: str = setting("mse", "Distortion D in the loss bpp + lambda * "
                            "D (balle.models.losses).",
                            choices=losses.DISTORTIONS)
  name: str = ""  # "" selects <architecture>-<distortion>-<lmbda>

  def __post_init__(self):
    if self.channels not in (1, 3):
      raise ValueError(f"channels must be 1 or 3, got {self.channels}")
    if self.num_filters == 0:
      object.__setattr__(self, "num_filters",
                         default_num_filters(self.channels))
    if self.latent_channels < 0:
      raise ValueError(f"latent_channels must be >= 0, got "
                       f"{self.latent_channels}")
    if self.latent_channels == self.num_filters:
      object.__setattr__(self, "latent_channels", 0)
    if self.gdn_form not in layers.GDN_FORMS:
      raise ValueError(f"gdn_form must be one of {layers.GDN_FORMS}, "
                       f"got {self.gdn_form!r}")
    model_class(self.architecture)  # raises for unknown names
    losses.distortion_function(self.distortion)
    if not self.name:
      object.__setattr__(
          self, "name",
          f"{self.architecture}-{self.distortion}-{self.lmbda:.4f}")

  @property
  def num_latent_channels(self):
    """M: latent_channels, or num_filters when that is 0."""
    return self.latent_channels or self.num_filters


# Settings added after models were shipped, with the value all those models
# have: hashed into the model id only when they differ, so old ids stand.
_SETTINGS_OUTSIDE_OLD_IDS = {"architecture": DEFAULT_ARCHITECTURE,
                             "distortion": "mse", "latent_channels": 0}


def register(cls):
  """Class decorator: makes `cls` the model of `cls.ARCHITECTURE`."""
  known = _REGISTRY.setdefault(cls.ARCHITECTURE, cls)
  if known is not cls:
    raise ValueError(f"architecture {cls.ARCHITECTURE!r} is already "
                     f"registered by {known.__name__}")
  return cls


def model_class(architecture):
  """The CompressionModel subclass registered as `architecture` (the
  families register when balle.models imports them)."""
  if architecture not in _REGISTRY:
    raise ValueError(f"unknown model architecture {architecture!r} (known: "
                     f"{', '.join(sorted(_REGISTRY))})")
  return _REGISTRY[architecture]


def load_model(directory):
  """The model saved by `save` in `directory`, of its registered class."""
  return CompressionModel.load(directory)


def _float16_values(weight):
  """float32 `weight` rounded to the nearest float16 values."""
  return tf.cast(tf.cast(weight, tf.float16), tf.float32)


class CompressionModel(tf.keras.Model):
  """Base of the models. Subclasses implement the methods that raise
  NotImplementedError, are constructed as cls(config, precision=...) and
  are registered with `register`."""

  ARCHITECTURE = None  # the registry and file-header name

  def __init__(self, config, precision, name):
    """`precision` of the transforms ("float32" or "mixed_bfloat16") is a
    training-time speed choice, not part of the configuration: the weights
    are float32 either way, and models load and code in float32."""
    super().__init__(name=name)
    if config.architecture != self.ARCHITECTURE:
      raise ValueError(f"{type(self).__name__} is {self.ARCHITECTURE!r}, "
                       f"the configuration {config.architecture!r}")
    self.config = config
    self.precision = precision
    self.model_id = None  # Set by freeze_for_coding() or load().
    # The id of the model's float-index coding when it also has exact
    # integer tables (`exact_tables`): the id its files carried before they
    # were made exact, decoded as then. None without exact tables.
    self.float_index_model_id = None

  # -- training -------------------------------------------------------------

  @property
  def downsampling_factor(self):
    """Pixels along each side per element of the model's coarsest section
    (bls2017: 16, its latents; bmshj2018: 64, its hyper-latents): tiles are
    multiples of it."""
    raise NotImplementedError

  def rate_distortion(self, images, training=True, straight_through=False):
    """(bpp, distortion, loss) for float images [B, H, W, C] on the 0..255
    scale: noisy latents and the differentiable rate with training=True,
    rounded latents and their ideal code length otherwise;
    loss = bpp + lambda * distortion (balle.models.losses). With training and
    `straight_through`, g_s gets the rounded latents instead of the noisy
    ones, with the identity as their gradient (the rate keeps the noise)."""
    raise NotImplementedError

  def call(self, images, training=False):
    return self.rate_distortion(images, training=training)

  @property
  def decoder_variables(self):
    """Trainable variables of the synthesis alone (decoder fine-tunes)."""
    raise NotImplementedError

  @property
  def prior_variables(self):
    """Trainable variables of the entropy model(s)."""
    raise NotImplementedError

  def widen_from(self, narrow):
    """Warm start from `narrow`, a model of this architecture with fewer
    filters N or latent channels M: assigns its weights so that this model
    computes the same reconstruction. Families that cannot, refuse."""
    raise ValueError(f"{self.ARCHITECTURE} models cannot be widened")

  def rescale_latents(self, factor):
    """Multiplies the latents by `factor` in place without changing the
    reconstruction of continuous latents. Families that cannot, refuse."""
    raise ValueError(f"{self.ARCHITECTURE} models cannot rescale latents")

  # -- coding ---------------------------------------------------------------

  def freeze_for_coding(self):
    """Builds the integer CDF tables from the trained prior (call once)."""
    if self.precision != "float32":
      raise ValueError("coding runs in float32: use coding_copy()")
    self._build_coding_tables()
    self.update_model_ids()

  def _build_coding_tables(self):
    raise NotImplementedError

  def exact_tables(self):
    """{name: int64 array} of the integer networks that make the decoder's
    choices exact (balle.models.integer_network), saved in EXACT_FILE; {} for a
    family whose choices need none (bls2017: its CDFs are integer tables)."""
    return {}

  def _restore_exact_tables(self, arrays):
    """Sets the integer networks of `exact_tables`' arrays."""
    raise ValueError(f"{self.ARCHITECTURE} models have no exact tables")

  def float_index_twin(self):
    """A model that codes as this one did before its exact tables (with the
    float indexes), for files with `float_index_model_id`."""
    raise NotImplementedError

  def model_for_file(self, model_id):
    """This model, or its `float_index_twin` for files of its float-index
    id; None for another model's files."""
    if model_id == self.model_id:
      return self
    if model_id == self.float_index_model_id:
      return self.float_index_twin()
    return None

  def _require_frozen(self):
    if self.model_id is None:
      raise RuntimeError("the model has no coding tables: call "
                         "freeze_for_coding() after training, or load() a "
                         "saved model")

  def section_shapes(self, height, width):
    """Shapes of the sections `compress` writes for an H x W image (or
    tile), in order. H and W are ints, or int32 scalar tensors (the
    SavedModel's decoder checks a file's section table with them)."""
    raise NotImplementedError

  def tile_coder(self):
    """The `balle.coding.tiling.TileCoder` that codes this model's images in
    tiles (one per model, traced functions cached in it)."""
    raise NotImplementedError

  def compress(self, image):
    """uint8 image [H, W, C] -> tuple of sections, each a pair (scalar
    string tensor, int32 shape tensor). A tf.function. C is the model's
    channel count, or 1 for an RGB model (coded as R = G = B)."""
    raise NotImplementedError

  def decompress(self, sections, image_shape, channels):
    """(tuple of (string, shape) as `compress` returns, [H, W], C) -> uint8
    image [H, W, C]. A tf.function."""
    raise NotImplementedError

  def section_checks(self, sections):
    """In TensorFlow ops, for the SavedModel's decoder: one bool tensor per
    section of `sections` (as `decompress` takes them, shapes already
    checked), true when the section is exactly what the range coder writes
    for the values it decodes to, decoded in bounded time
    (`balle.coding.range_coding.range_decode`, `check_range_code`). Only checked
    sections may be given to `decompress`, whose tfc decoder is unbounded."""
    raise NotImplementedError

  def coding_copy(self):
    """A float32 copy with the current weights, frozen for coding."""
    return self._frozen_copy(lambda name, weight: weight)

  def half_precision_copy(self):
    """A new frozen model with every float weight of this one rounded to the
    nearest float16 value and coding tables built from the rounded prior.
    It codes slightly differently (measure it); `save` stores it in half the
    bytes."""
    return self._frozen_copy(lambda name, weight: _float16_values(weight))

  def compact_copy(self, int8_kernel=weight_storage.is_int8_kernel):
    """`half_precision_copy` with the inner convolution kernels rounded
    further, to int8 levels times a float16 scale per filter
    (balle.models.weight_storage): `save` stores it in ~0.6x the bytes of the
    half-precision copy (benchmarks/weight_storage.py measures the cost).
    `int8_kernel(name, shape)` chooses the kernels rounded so (other
    choices than the default are for measurements: `save` stores int8 only
    what `weight_storage.is_int8_kernel` selects)."""
    def convert(name, weight):
      if int8_kernel(name, weight.shape):
        return weight_storage.round_to_int8_filters(weight.numpy())
      return _float16_values(weight)
    return self._frozen_copy(convert)

  def _frozen_copy(self, convert):
    """A new float32 model with weights convert(name, w) of this one's,
    frozen."""
    copy = type(self)(self.config)
    weights = self.named_weights()
    for name, variable in copy.named_weights().items():
      variable.assign(convert(name, weights[name]))
    copy.freeze_for_coding()
    return copy

  # -- persistence ----------------------------------------------------------

  def named_weights(self):
    """{variable name: variable} of every variable, coding tables included."""
    weights = {}
    for variable in self.variables:
      name = variable.name.split(":")[0]
      if name in weights:
        raise RuntimeError(f"duplicate variable name {name}")
      weights[name] = variable
    return weights

  def update_model_ids(self):
    """Sets model_id from the configuration and weights (and, with exact
    tables, float_index_model_id to that id and model_id to one that adds
    the tables): call after changing either."""
    weights_id = self._compute_model_id()
    tables = self.exact_tables()
    if not tables:
      self.model_id, self.float_index_model_id = weights_id, None
      return
    digest = hashlib.sha256(b"exact:" + weights_id)
    for name, array in sorted(tables.items()):
      digest.update(name.encode())
      digest.update(np.ascontiguousarray(array, np.int64).tobytes())
    self.model_id = digest.digest()[:8]
    self.float_index_model_id = weights_id

  def _id_fields(self):
    """config.json's ids (its keys ending in "model_id"), hex."""
    ids = dict(model_id=self.model_id,
               float_index_model_id=self.float_index_model_id)
    return {key: value.hex() for key, value in ids.items() if value}

  def _compute_model_id(self):
    """8 bytes of SHA-256 over the configuration and every weight, in order
    (the float weights alone; `update_model_ids` adds the exact tables)."""
    config = dataclasses.asdict(self.config)
    for name, value in _SETTINGS_OUTSIDE_OLD_IDS.items():
      if config[name] == value:
        del config[name]
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, variable in sorted(self.named_weights().items()):
      digest.update(name.encode())
      digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.digest()[:8]

  def _coding_tables_config(self):
    """{config.json key: configuration} of the frozen entropy model(s)."""
    raise NotImplementedError

  def _restore_coding_tables(self, document):
    """Rebuilds the entropy model(s) from config.json's `document`."""
    raise NotImplementedError

  def save(self, directory, overwrite=False):
    """Writes config.json and weights.npz into `directory` (frozen models).

    Each array is stored in the smallest form that holds it exactly
    (balle.models.weight_storage: float16 after `half_precision_copy`, int8
    kernels after `compact_copy`, int16 for the CDF tables)."""
    self._require_frozen()
    os.makedirs(directory, exist_ok=True)
    config_path = os.path.join(directory, CONFIG_FILE)
    if os.path.exists(config_path) and not overwrite:
      raise FileExistsError(f"{directory} already holds a model; pass "
                            "overwrite=True to replace it")
    weights = {name: v.numpy() for name, v in self.named_weights().items()}
    document = {
        "model": dataclasses.asdict(self.config),
        **self._coding_tables_config(),
        **self._id_fields(),
    }
    write_file_atomic(os.path.join(directory, WEIGHTS_FILE),
                      lambda f: weight_storage.write(f, weights),
                      overwrite=True)
    tables = self.exact_tables()
    exact_path = os.path.join(directory, EXACT_FILE)
    if tables:
      write_file_atomic(exact_path, lambda f: weight_storage.write(f, tables),
                        overwrite=True)
    elif os.path.exists(exact_path):
      os.remove(exact_path)
    write_file_atomic(config_path,
                      lambda f: f.write(json.dumps(document, indent=2).encode()),
                      overwrite=True)

  @classmethod
  def load(cls, directory):
    """Loads a model saved by `save`, as the class its architecture names
    (a subclass of `cls`); checks the weights against model_id."""
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.exists(config_path):
      raise FileNotFoundError(f"no model at {directory}: {CONFIG_FILE} missing")
    with open(config_path) as f:
      document = json.load(f)
    config = ModelConfig(**document["model"])
    target = model_class(config.architecture)
    if not issubclass(target, cls):
      raise ValueError(f"{directory} holds a {config.architecture!r} model, "
                       f"not a {cls.__name__}")
    model = target(config)
    model._restore_coding_tables(document)
    named = model.named_weights()
    arrays = weight_storage.read(os.path.join(directory, WEIGHTS_FILE))
    missing = set(named) ^ set(arrays)
    if missing:
      raise ValueError(f"{directory}: weights do not match the "
                       f"configuration ({sorted(missing)[:3]} ...)")
    for name, variable in named.items():
      variable.assign(arrays[name].astype(variable.dtype.as_numpy_dtype))
    exact_path = os.path.join(directory, EXACT_FILE)
    if os.path.exists(exact_path):
      model._restore_exact_tables(weight_storage.read(exact_path))
    model.update_model_ids()
    if model._id_fields() != {key: document[key] for key in document
                              if key.endswith("model_id")}:
      raise ValueError(f"{directory}: weights are corrupted (model id "
                       f"{model.model_id.hex()} != {document['model_id']})")
    return model
