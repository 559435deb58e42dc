import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from balle import cli
from balle.coding import codec
from balle.coding import file_format
from balle.coding.file_format import FormatError
from balle.models import compression_model
from balle.models.bls2017 import ModelConfig
from balle.models.bmshj2018 import ScaleHyperpriorModel
from balle.models.bmshj2018_tiles import HyperpriorTileCoder
from conftest import rate_estimates, smooth_image, tiny_hyperprior_config
from experiments import make_exact


def test_architecture_is_registered():
  assert compression_model.model_class("bmshj2018") is ScaleHyperpriorModel
  model = ScaleHyperpriorModel(num_filters=8)
  assert model.config.architecture == "bmshj2018"
  assert model.downsampling_factor == 64
  assert model.section_shapes(100, 150) == [(2, 3, 8), (7, 10, 8)]
  with pytest.raises(ValueError, match="'bls2017'"):
    ScaleHyperpriorModel(ModelConfig(num_filters=8))


def test_loss_is_rate_of_y_and_z_plus_lambda_times_mse():
  tf.random.set_seed(0)
  model = ScaleHyperpriorModel(tiny_hyperprior_config(lmbda=0.05))
  image = smooth_image(64, 128)
  images = tf.constant(image[None].astype(np.float32))
  bpp, mse_255, loss = model.rate_distortion(images, training=True)
  assert float(loss) == pytest.approx(float(bpp) + 0.05 * float(mse_255))
  assert float(mse_255) == pytest.approx(np.mean(np.square(image.astype(np.float64))), rel=0.5)
  # training=False: the information of the rounded y and z, from their two
  # entropy models.
  bpp, _, _ = model.rate_distortion(images, training=False)
  latents = model.analysis(images / 255.)
  hyper_latents = model.hyper_analysis(tf.abs(latents))
  side = tfc.ContinuousBatchedEntropyModel(model.hyperprior, coding_rank=3,
                                           compression=False)
  hyper_latents_hat, side_bits = side(hyper_latents, training=False)
  indexes = model.coding_indexes(hyper_latents_hat, [0, 0, 4, 8])
  entropy = tfc.LocationScaleIndexedEntropyModel(
      tfc.NoisyNormal, 64, model.scale_table.scale, coding_rank=3)
  _, bits = entropy(latents, indexes, training=False)
  assert float(side_bits) > 0 and float(bits) > 0
  assert float(bpp) == pytest.approx(
      (float(bits) + float(side_bits)) / image.shape[0] / image.shape[1],
      rel=1e-5)


def test_straight_through_decodes_rounded_latents_with_gradients():
  tf.random.set_seed(0)
  model = ScaleHyperpriorModel(tiny_hyperprior_config(lmbda=0.05))
  images = tf.constant(smooth_image(64, 64)[None].astype(np.float32))
  _, rounded_mse, _ = model.rate_distortion(images, training=False)
  with tf.GradientTape() as tape:
    bpp, mse_255, _ = model.rate_distortion(images, training=True,
                                            straight_through=True)
  assert float(mse_255) == pytest.approx(float(rounded_mse), rel=1e-5)
  gradients = tape.gradient(mse_255, model.analysis.trainable_variables)
  assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients
             if g is not None)
  assert float(bpp) > 0


def test_rate_estimate_matches_coded_bits():
  """Train briefly, then compare the ideal code length of the rounded y and
  z and the noisy training rate with the two range-coded sections."""
  tf.random.set_seed(0)
  model = ScaleHyperpriorModel(tiny_hyperprior_config(num_filters=16,
                                                      latent_channels=24,
                                                      lmbda=1.0))
  noisy_bpp, ideal_bpp, coded_bpp = rate_estimates(model,
                                                   smooth_image(128, 128))
  assert coded_bpp > 0.05  # the model codes real information
  # Each of the two strings may end with a few bytes the estimate lacks.
  assert ideal_bpp == pytest.approx(coded_bpp, rel=0.03, abs=8 * 8 / 128**2)
  assert noisy_bpp == pytest.approx(coded_bpp, rel=0.10)


def test_round_trip_any_size_and_gray(hyper_model):
  for shape in [(1, 1, 3), (17, 33, 3), (64, 48, 3), (70, 45, 1)]:
    image = smooth_image(*shape)
    data = codec.compress_image(hyper_model, image)
    header, sections = file_format.unpack(data)
    assert header.architecture == "bmshj2018" and len(sections) == 2
    decoded = codec.decompress_image(data, hyper_model)
    assert decoded.shape == shape
    assert codec.compress_image(hyper_model, image) == data


def test_save_load_keeps_the_model_id(hyper_model, tmp_path):
  assert isinstance(hyper_model, ScaleHyperpriorModel)
  assert hyper_model.config == tiny_hyperprior_config(name="tiny-hyper")
  model = ScaleHyperpriorModel(tiny_hyperprior_config(lmbda=0.02))
  model.freeze_for_coding()
  model.save(str(tmp_path / "exact"))
  loaded = compression_model.load_model(str(tmp_path / "exact"))
  assert loaded.model_id == model.model_id
  image = smooth_image(50, 30)
  assert (codec.compress_image(loaded, image) ==
          codec.compress_image(model, image))
  for name, copy in (("half", model.half_precision_copy()),
                     ("compact", model.compact_copy())):
    copy.save(str(tmp_path / name))
    assert compression_model.load_model(
        str(tmp_path / name)).model_id == copy.model_id
  with np.load(tmp_path / "compact" / "weights.npz") as arrays:
    assert arrays["hyper_deconv_2/kernel_real"].dtype == np.int8


_CODE_IN_SUBPROCESS = """
import sys, numpy as np
from balle.coding import codec
from balle.models import compression_model
model = compression_model.load_model(sys.argv[1])
image = np.load(sys.argv[2])
data = codec.compress_image(model, image, tile_size=int(sys.argv[4]))
open(sys.argv[3] + ".balle", "wb").write(data)
np.save(sys.argv[3] + ".npy", codec.decompress_image(data, model))
"""


@pytest.mark.parametrize("tile_size", [1024, 64])
def test_coding_is_deterministic_across_processes(hyper_model_dir,
                                                  hyper_model, tmp_path,
                                                  tile_size):
  image = smooth_image(100, 130)
  np.save(tmp_path / "image.npy", image)
  for run in ("a", "b"):
    subprocess.run([sys.executable, "-c", _CODE_IN_SUBPROCESS,
                    hyper_model_dir, str(tmp_path / "image.npy"),
                    str(tmp_path / run), str(tile_size)], check=True)
  data_a = (tmp_path / "a.balle").read_bytes()
  assert data_a == (tmp_path / "b.balle").read_bytes()
  assert data_a == codec.compress_image(hyper_model, image,
                                        tile_size=tile_size)
  decoded = codec.decompress_image(data_a, hyper_model)
  np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), decoded)
  np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), decoded)


def test_tiles_code_like_the_whole_image(hyper_model):
  image = smooth_image(150, 200)
  whole = codec.compress_image(hyper_model, image)
  tiled = codec.compress_image(hyper_model, image, tile_size=64)
  header, sections = file_format.unpack(tiled)
  assert header.tile_size == 64 and len(sections) == 2 * 3 * 4
  assert [s.shape for s in sections[-2:]] == [(1, 1, 8), (2, 1, 12)]
  np.testing.assert_array_equal(codec.decompress_image(tiled, hyper_model),
                                codec.decompress_image(whole, hyper_model))
  # Not only the pixels: z and the scale indexes of y are the whole image's
  # (so the halos cover h_a's and h_s's receptive fields too).
  coder = hyper_model.tile_coder()
  assert isinstance(coder, HyperpriorTileCoder)
  rects = file_format.tiles(150, 200, 64)
  latents = coder.decode_latents(sections, rects, 150, 200)
  _, whole_sections = file_format.unpack(whole)
  np.testing.assert_array_equal(
      latents, coder.decode_latents(whole_sections, [(0, 0, 150, 200)], 150,
                                    200))
  whole_sections = hyper_model.compress(tf.constant(image))
  (side_string, side_shape), _ = whole_sections
  hyper_grid = hyper_model.side_entropy_model.decompress(
      side_string[None], side_shape[:2])[0].numpy()
  whole_indexes = hyper_model.coding_indexes(
      hyper_grid[None], [0, 0, 10, 13])[0].numpy()
  for rect in rects:
    top, left = rect[0] // 16, rect[1] // 16
    indexes = coder.tile_indexes(hyper_grid, rect)
    np.testing.assert_array_equal(
        indexes, whole_indexes[top:top + indexes.shape[0],
                               left:left + indexes.shape[1]])
  gray = smooth_image(70, 140, channels=1)
  np.testing.assert_array_equal(
      codec.decompress_image(codec.compress_image(hyper_model, gray, 64),
                             hyper_model),
      codec.decompress_image(codec.compress_image(hyper_model, gray),
                             hyper_model))
  with pytest.raises(ValueError, match="multiple of 64"):
    codec.compress_image(hyper_model, image, tile_size=48)


def _forge(data, header=None, sections=None):
  old_header, old_sections = file_format.unpack(data, max_pixels=None)
  return file_format.pack(header or old_header, sections or old_sections)


@pytest.mark.parametrize("tile_size", [1024, 64])
def test_corrupted_sections_are_rejected(hyper_model, tile_size):
  """Forged z and y sections (checksum recomputed) are FormatErrors: a z
  section that is not a range code, or one that is another (shorter or
  longer) z's, whose indexes then fail its tile's y. (A flipped byte may
  leave a valid code, which no check can tell from the original: the code
  has little redundancy, and a changed z may even leave every index of y
  as it was.)"""
  data = codec.compress_image(hyper_model, smooth_image(100, 130),
                              tile_size=tile_size)
  _, sections = file_format.unpack(data)
  rng = np.random.default_rng(0)
  for index in (0, 1, len(sections) - 1):  # z and y of the first tile, y last
    section = sections[index]
    forgeries = [b"", section.data + b"\0", section.data * 2,
                 rng.bytes(500)]
    for forged in forgeries:
      replaced = list(sections)
      replaced[index] = file_format.Section(section.shape, forged)
      with pytest.raises(FormatError,
                         match=f"section ({index}|{index + 1}) is corrupted"):
        codec.decompress_image(_forge(data, sections=replaced), hyper_model)
  # Without the forger's checksum, any flipped byte is caught.
  for position in range(0, len(data), 7):
    damaged = bytearray(data)
    damaged[position] ^= 0x5A
    with pytest.raises(FormatError):
      codec.decompress_image(bytes(damaged), hyper_model)


def test_section_tables_must_match_the_architecture(hyper_model):
  data = codec.compress_image(hyper_model, smooth_image(100, 130),
                              tile_size=64)
  header, sections = file_format.unpack(data)
  with pytest.raises(FormatError, match="11 sections for 6 tiles"):
    codec.decompress_image(_forge(data, sections=sections[:-1]), hyper_model)
  swapped = [sections[1], sections[0]] + sections[2:]
  with pytest.raises(FormatError, match=r"section 0 has shape \(4, 4, 12\)"):
    codec.decompress_image(_forge(data, sections=swapped), hyper_model)
  with pytest.raises(FormatError, match="not a multiple of 64"):
    codec.decompress_image(
        _forge(data, header=dataclasses.replace(header, tile_size=32)),
        hyper_model)
  with pytest.raises(FormatError, match="above the limit of 3000"):
    codec.decompress_image(data, hyper_model, max_pixels=3000)
  bls2017 = dataclasses.replace(header, architecture="bls2017")
  with pytest.raises(FormatError, match="'bls2017' model"):
    codec.decompress_image(_forge(data, header=bls2017), hyper_model)


def test_tensorflow_errors_become_format_errors(hyper_model, monkeypatch):
  data = codec.compress_image(hyper_model, smooth_image(100, 130),
                              tile_size=64)

  def failing(*args, **kwargs):
    raise tf.errors.InvalidArgumentError(None, None, "index out of range\n"
                                         "  more lines")

  monkeypatch.setattr(tfc, "entropy_decode_index", failing)
  with pytest.raises(FormatError, match=r"section 1 is corrupted: the range "
                     r"decoder rejects it \(index out of range\)$"):
    codec.decompress_image(data, hyper_model)


def test_info_names_the_architecture(hyper_model, tmp_path, capsys):
  path = tmp_path / "image.balle"
  path.write_bytes(codec.compress_image(hyper_model, smooth_image(100, 130),
                                        tile_size=64))
  assert cli.main(["info", str(path)]) == 0
  out = capsys.readouterr().out
  assert "bmshj2018" in out and "sections:   12" in out


def test_frozen_models_choose_cdfs_exactly_and_save_the_tables(hyper_model,
                                                               tmp_path):
  assert hyper_model.exact_hyper_synthesis is not None
  assert hyper_model.float_index_model_id not in (None, hyper_model.model_id)
  directory = tmp_path / "model"
  hyper_model.save(str(directory))
  assert (directory / compression_model.EXACT_FILE).exists()
  loaded = compression_model.load_model(str(directory))
  assert (loaded.model_id, loaded.float_index_model_id) == (
      hyper_model.model_id, hyper_model.float_index_model_id)
  # The tables are part of the id: other thresholds are another model.
  loaded.index_thresholds = loaded.index_thresholds + 1
  loaded.update_model_ids()
  assert loaded.model_id != hyper_model.model_id
  assert loaded.float_index_model_id == hyper_model.float_index_model_id


def _as_saved_before_exact_indexes(model_dir, directory):
  """A copy of the frozen hyperprior in `model_dir` as models were saved
  before exact tables: no exact.npz, its float id in config.json."""
  shutil.copytree(model_dir, directory)
  os.remove(os.path.join(directory, compression_model.EXACT_FILE))
  config_path = os.path.join(directory, compression_model.CONFIG_FILE)
  with open(config_path) as f:
    document = json.load(f)
  document["model_id"] = document.pop("float_index_model_id")
  with open(config_path, "w") as f:
    json.dump(document, f)
  return directory


def test_a_model_made_exact_still_decodes_the_files_it_wrote_before(
    hyper_model_dir, tmp_path):
  directory = _as_saved_before_exact_indexes(hyper_model_dir,
                                             str(tmp_path / "old"))
  old = compression_model.load_model(directory)
  assert old.exact_hyper_synthesis is None
  image = smooth_image(70, 90)
  old_file = codec.compress_image(old, image)
  old_pixels = codec.decompress_image(old_file, old)
  old_id, new_id = make_exact.make_exact(directory)
  assert old_id == old.model_id.hex() != new_id
  new = compression_model.load_model(directory)
  assert new.model_id.hex() == new_id
  np.testing.assert_array_equal(codec.decompress_image(old_file, new),
                                old_pixels)
  new_file = codec.compress_image(new, image)
  assert file_format.unpack(new_file)[0].model_id == new.model_id
  # The same latents, coded with (nearly always) the same CDFs.
  np.testing.assert_array_equal(codec.decompress_image(new_file, new),
                                old_pixels)
  assert abs(len(new_file) - len(old_file)) <= 0.01 * len(old_file)
  with pytest.raises(FormatError, match="different model|not by the given"):
    codec.decompress_image(new_file, old)

