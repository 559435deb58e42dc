"""Tests of experiments/kodak.py: the Kodak download and report choices."""

import io
import os
import sys
import urllib.error

import numpy as np
import pytest
from PIL import Image

# experiments/ is not installed; import it from this checkout.
from conftest import REPOSITORY  # pylint: disable=wrong-import-order
sys.path.insert(0, REPOSITORY)
# pylint: disable=wrong-import-position
from balle.evaluation import rd_curves
from balle.evaluation import reference_curves
from experiments import kodak


def test_report_choices_name_existing_curves():
  assert set(kodak.PUBLISHED_CURVES) <= set(reference_curves.keys())
  families = {reference_curves.load(key).family
              for key in kodak.PUBLISHED_CURVES}
  for anchor in kodak.ANCHORS:
    assert anchor.kind != rd_curves.PUBLISHED or anchor.family in families
    assert set(anchor.metrics) <= set(rd_curves.METRICS)


def test_ensure_kodak_offline_names_the_flag(tmp_path, monkeypatch):
  def offline(*args, **kwargs):
    raise urllib.error.URLError("no network")
  monkeypatch.setattr(kodak.urllib.request, "urlopen", offline)
  with pytest.raises(FileNotFoundError) as raised:
    kodak.ensure_kodak(str(tmp_path / "kodak"))
  assert "--images" in str(raised.value)
  assert "no network" in str(raised.value)
  with pytest.raises(FileNotFoundError, match="--images"):
    kodak.ensure_kodak(str(tmp_path / "kodak"), download=False)
  present = tmp_path / "present"
  present.mkdir()
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(present / "a.png")
  kodak.ensure_kodak(str(present))


def test_download_kodak_writes_files_and_resumes(tmp_path, monkeypatch):
  requested = []

  class Response(io.BytesIO):
    def __enter__(self):
      return self

    def __exit__(self, *args):
      return False

  def fake_urlopen(url, timeout):
    requested.append(url)
    return Response(b"png bytes")
  monkeypatch.setattr(kodak.urllib.request, "urlopen", fake_urlopen)
  (tmp_path / "kodim05.png").write_bytes(b"already here")
  kodak.download_kodak(str(tmp_path))
  assert len(requested) == kodak.NUM_KODAK_IMAGES - 1
  assert requested[0].endswith("/kodim01.png")
  assert (tmp_path / "kodim24.png").read_bytes() == b"png bytes"
  assert (tmp_path / "kodim05.png").read_bytes() == b"already here"
  assert len(os.listdir(tmp_path)) == kodak.NUM_KODAK_IMAGES  # no temporaries
