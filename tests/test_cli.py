"""End to end through the `balle` command, on generated images."""

import dataclasses
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from balle import cli
from balle import pretrained
from balle.coding import codec
from balle.coding import file_format
from balle.io import image_io
from conftest import smooth_image


def run(*argv):
  return cli.main([str(a) for a in argv])


@pytest.fixture
def photo(tmp_path):
  path = tmp_path / "photo.png"
  Image.fromarray(smooth_image(45, 61)).save(path)
  return path


def test_compress_decompress_info(photo, tiny_model_dir, tmp_path, capsys):
  assert run("compress", photo, "--model", tiny_model_dir, "--verbose") == 0
  out = capsys.readouterr().out
  assert "bpp" in out and "PSNR" in out
  assert "MS-SSIM undefined for 45x61" in out  # too small for 5 scales
  coded = tmp_path / "photo.balle"
  assert coded.exists()
  decoded = tmp_path / "decoded.png"
  assert run("decompress", coded, decoded, "--model", tiny_model_dir) == 0
  assert image_io.read_image(str(decoded)).shape == (45, 61, 3)
  assert run("info", coded) == 0
  out = capsys.readouterr().out
  assert "61x45" in out and "RGB" in out


def test_outputs_are_never_overwritten(photo, tiny_model_dir, tmp_path,
                                       capsys):
  coded = tmp_path / "photo.balle"
  coded.write_bytes(b"keep me")
  assert run("compress", photo, "--model", tiny_model_dir) == 1
  assert "exists" in capsys.readouterr().err
  assert coded.read_bytes() == b"keep me"
  assert run("compress", photo, "--model", tiny_model_dir,
             "--overwrite") == 0
  assert coded.read_bytes()[:4] == b"BLLE"
  original = photo.read_bytes()
  assert run("decompress", coded, photo, "--model", tiny_model_dir) == 1
  assert run("compress", photo, photo, "--model", tiny_model_dir,
             "--overwrite") == 1
  assert photo.read_bytes() == original


@pytest.mark.parametrize("content,message", [
    (b"BLLE\x01garbage", "truncated"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "not a .balle file"),
])
def test_bad_files_give_one_line_errors(tmp_path, tiny_model_dir, capsys,
                                        content, message):
  bad = tmp_path / "bad.balle"
  bad.write_bytes(content)
  assert run("decompress", bad, "--model", tiny_model_dir) == 1
  err = capsys.readouterr().err
  assert err.startswith("balle: error:") and message in err
  assert err.count("\n") == 1
  assert not (tmp_path / "bad.png").exists()


def test_unknown_model_and_alpha(photo, tmp_path, tiny_model_dir, capsys):
  assert run("compress", photo, "--model", tmp_path / "nowhere") == 1
  assert "no shipped model" in capsys.readouterr().err
  rgba = tmp_path / "rgba.png"
  Image.fromarray(np.dstack([smooth_image(9, 9), smooth_image(9, 9, 1)])
                  ).save(rgba)
  assert run("compress", rgba, "--model", tiny_model_dir) == 1
  assert "--drop_alpha" in capsys.readouterr().err
  assert run("compress", rgba, "--model", tiny_model_dir, "--drop_alpha") == 0
  coded = tmp_path / "rgba.balle"
  assert run("decompress", coded, tmp_path / "out.png") == 1  # not shipped
  assert "pass --model" in capsys.readouterr().err


def test_console_script_in_a_subprocess(photo, tiny_model_dir, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "balle.cli", "compress", str(photo),
       str(tmp_path / "x.balle"), f"--model={tiny_model_dir}"],
      capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  result = subprocess.run(
      [sys.executable, "-m", "balle.cli", "decompress",
       str(tmp_path / "missing.balle"), f"--model={tiny_model_dir}"],
      capture_output=True, text=True)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().startswith("balle: error:")


def _one_line_error(capsys, message):
  err = capsys.readouterr().err
  assert err.startswith("balle: error:") and err.count("\n") == 1, err
  assert message in err, err


def test_outputs_get_the_permissions_the_umask_allows(photo, tiny_model_dir,
                                                      tmp_path):
  previous = os.umask(0o027)
  try:
    assert run("compress", photo, "--model", tiny_model_dir) == 0
    assert run("decompress", tmp_path / "photo.balle", tmp_path / "d.png",
               "--model", tiny_model_dir) == 0
  finally:
    os.umask(previous)
  for name in ("photo.balle", "d.png"):
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640


def test_output_path_is_checked_before_the_work(photo, tiny_model_dir,
                                                tmp_path, capsys, monkeypatch):
  assert run("compress", photo, "--model", tiny_model_dir) == 0
  capsys.readouterr()

  def no_work(*args, **kwargs):
    raise AssertionError("the work started")

  monkeypatch.setattr(codec, "decompress_image", no_work)
  monkeypatch.setattr(codec, "compress_image", no_work)
  coded = tmp_path / "photo.balle"
  assert run("decompress", coded, tmp_path / "out.xyz",
             "--model", tiny_model_dir) == 1
  _one_line_error(capsys, "suffix '.xyz'")
  assert run("decompress", coded, tmp_path / "no" / "out.png",
             "--model", tiny_model_dir) == 1
  _one_line_error(capsys, "does not exist")
  assert run("compress", photo, tmp_path / "no" / "x.balle",
             "--model", tiny_model_dir) == 1
  _one_line_error(capsys, "does not exist")


def _forged(path, mangle):
  """Rewrites a .balle file's sections with mangle(section) and recomputes
  the checksum, as a forger would."""
  header, sections = file_format.unpack(path.read_bytes())
  path.write_bytes(file_format.pack(header, [mangle(s) for s in sections]))


@pytest.mark.parametrize("mangle,message", [
    (lambda s: file_format.Section(s.shape, b""), "section 0 is corrupted"),
    (lambda s: file_format.Section(s.shape, bytes(range(256))),
     "256 bytes are not a range coding"),
    (lambda s: file_format.Section((9, 9, 8), s.data), "section 0 has shape"),
])
def test_forged_files_give_one_line_errors(photo, tiny_model_dir, tmp_path,
                                           capsys, mangle, message):
  assert run("compress", photo, "--model", tiny_model_dir) == 0
  coded = tmp_path / "photo.balle"
  _forged(coded, mangle)
  capsys.readouterr()
  assert run("decompress", coded, tmp_path / "out.png",
             "--model", tiny_model_dir) == 1
  _one_line_error(capsys, message)
  assert not (tmp_path / "out.png").exists()


def test_pixel_limits(photo, tiny_model_dir, tmp_path, capsys):
  assert run("compress", photo, "--model", tiny_model_dir,
             "--max_pixels", 2000) == 1
  _one_line_error(capsys, "above the limit of 2000 pixels")
  assert run("compress", photo, "--model", tiny_model_dir) == 0
  coded = tmp_path / "photo.balle"
  capsys.readouterr()
  assert run("info", coded, "--max_pixels", 2000) == 1
  _one_line_error(capsys, "2745 pixels is above the limit")
  assert run("decompress", coded, tmp_path / "out.png", "--model",
             tiny_model_dir, "--max_pixels", 2000) == 1
  _one_line_error(capsys, "2745 pixels is above the limit")
  header, sections = file_format.unpack(coded.read_bytes())
  huge = dataclasses.replace(header, height=65535, width=65535)
  coded.write_bytes(file_format.pack(huge, sections))
  assert run("info", coded) == 1
  _one_line_error(capsys, "above the limit")


@pytest.mark.parametrize("content,message", [
    (b"", "not an image"),
    (b"BLLE\x02" + bytes(60), "not an image"),
])
def test_bad_inputs_to_the_encoder(tmp_path, tiny_model_dir, capsys, content,
                                   message):
  bad = tmp_path / "bad.png"
  bad.write_bytes(content)
  assert run("compress", bad, "--model", tiny_model_dir) == 1
  _one_line_error(capsys, message)


def test_animations_are_refused_by_name(tmp_path, tiny_model_dir, capsys):
  frames = [Image.fromarray(smooth_image(8, 8, seed=s)) for s in range(2)]
  frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
  assert run("compress", tmp_path / "a.gif", "--model", tiny_model_dir) == 1
  _one_line_error(capsys, "a.gif: file has 2 frames")


def test_quality_picks_a_shipped_model_and_models_lists_them(photo, tmp_path,
                                                             capsys):
  assert run("models") == 0
  listing = capsys.readouterr().out
  assert "quality" in listing and "(default)" in listing
  assert "bls2017   bls2017-mse-0.0130" in listing  # family, then name
  assert run("compress", photo, tmp_path / "q4.balle", "--quality", "4") == 0
  assert "bpp" in capsys.readouterr().out
  assert run("compress", photo, tmp_path / "q9.balle", "--quality", "9") == 1
  assert "quality must be 1..8" in capsys.readouterr().err
  with pytest.raises(SystemExit):  # argparse: --model and --quality exclude
    run("compress", photo, "--quality", "4", "--model", "x")
  assert run("compress", photo, tmp_path / "f.balle", "--family",
             "bls2017") == 1
  assert "--family picks the model of a --quality" in capsys.readouterr().err
  assert not (tmp_path / "f.balle").exists()


def test_info_says_whether_a_file_decodes_on_every_machine(tmp_path, capsys):
  model = pretrained.resolve("bmshj2018-mse-0.0018")
  image = np.full((40, 50, 3), 120, np.uint8)
  for name, writer, expected in (
      ("exact", model, "portable:   yes"),
      ("old", model.float_index_twin(), "portable:   at risk"),
      ("factorized", pretrained.resolve(), "portable:   yes")):
    path = tmp_path / f"{name}.balle"
    path.write_bytes(codec.compress_image(writer, image))
    assert run("info", path) == 0
    assert expected in capsys.readouterr().out
