import json
import os
import time

import pytest
import tensorflow as tf

from balle.models import compression_model
from balle.models.bls2017 import FactorizedPriorModel
from balle.models.compression_model import ModelConfig


@compression_model.register
class _ToyModel(compression_model.CompressionModel):
  """The least a registered architecture needs to be saved and loaded."""

  ARCHITECTURE = "toy-test"

  def __init__(self, config, precision="float32"):
    super().__init__(config, precision, name="toy")
    self.scale = tf.Variable(2.0, name="toy_scale")

  def _build_coding_tables(self):
    pass

  def _coding_tables_config(self):
    return {}

  def _restore_coding_tables(self, document):
    pass


def test_unknown_architecture_is_named():
  with pytest.raises(ValueError, match="'nope'.*known: .*bls2017"):
    compression_model.model_class("nope")
  with pytest.raises(ValueError, match="'nope'"):
    ModelConfig(architecture="nope")


def test_bls2017_is_the_factorized_prior():
  assert compression_model.model_class("bls2017") is FactorizedPriorModel
  assert ModelConfig().architecture == FactorizedPriorModel.ARCHITECTURE
  assert FactorizedPriorModel(num_filters=4).downsampling_factor == 16


def test_an_architecture_is_registered_once():
  class Other(_ToyModel):
    pass

  with pytest.raises(ValueError, match="already registered by _ToyModel"):
    compression_model.register(Other)
  assert compression_model.register(_ToyModel) is _ToyModel


def test_config_without_architecture_loads_as_bls2017(tiny_model, tmp_path):
  """Models saved before the setting existed (the shipped ones) keep
  loading, with their model id."""
  tiny_model.save(str(tmp_path))
  path = tmp_path / compression_model.CONFIG_FILE
  document = json.loads(path.read_text())
  del document["model"]["architecture"], document["model"]["distortion"]
  path.write_text(json.dumps(document))
  loaded = compression_model.load_model(str(tmp_path))
  assert isinstance(loaded, FactorizedPriorModel)
  assert loaded.config == tiny_model.config
  assert loaded.model_id == tiny_model.model_id


def test_saving_twice_writes_identical_bytes(tiny_model, tmp_path,
                                            monkeypatch):
  """A model saved again (a shipped copy of a campaign rung) is the same
  file, whatever the clock says, so git stores it once."""
  tiny_model.save(str(tmp_path / "first"))
  clock = time.time()
  monkeypatch.setattr(time, "time", lambda: clock + 3600)
  tiny_model.save(str(tmp_path / "second"))
  for name in (compression_model.CONFIG_FILE, compression_model.WEIGHTS_FILE):
    assert ((tmp_path / "first" / name).read_bytes()
            == (tmp_path / "second" / name).read_bytes())


def test_load_model_dispatches_on_the_architecture(tmp_path):
  toy = _ToyModel(ModelConfig(architecture="toy-test", num_filters=2))
  assert toy.config.name == "toy-test-mse-0.0130"
  toy.freeze_for_coding()
  toy.save(str(tmp_path))
  loaded = compression_model.load_model(str(tmp_path))
  assert type(loaded) is _ToyModel
  assert loaded.model_id == toy.model_id and float(loaded.scale) == 2.0
  with pytest.raises(ValueError, match="'toy-test' model, not a Factorized"):
    FactorizedPriorModel.load(str(tmp_path))
  with pytest.raises(NotImplementedError):
    loaded.section_shapes(16, 16)


def test_new_settings_enter_the_model_id_only_off_their_old_value(
    monkeypatch):
  """architecture and distortion are hashed unless they have the value of
  every model shipped before they existed, so those ids stand."""
  toy = _ToyModel(ModelConfig(architecture="toy-test", num_filters=2))
  toy_id = toy._compute_model_id()  # pylint: disable=protected-access
  monkeypatch.setitem(
      compression_model._SETTINGS_OUTSIDE_OLD_IDS,  # pylint: disable=protected-access
      "architecture", "toy-test")
  assert toy._compute_model_id() != toy_id  # pylint: disable=protected-access


def test_model_must_match_its_config():
  with pytest.raises(ValueError, match="'bls2017', the configuration "
                     "'toy-test'"):
    FactorizedPriorModel(ModelConfig(architecture="toy-test"))
  assert os.path.basename(compression_model.CONFIG_FILE) == "config.json"
