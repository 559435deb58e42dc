"""End to end through the `balle` command, on generated images."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from balle import cli, image_io
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
