"""Atomic writes: permissions, refusals, failures that name the output."""

import errno
import os
import stat

import pytest

from balle.io import safe_write


@pytest.fixture
def umask():
  """Sets the process umask for one test and restores it."""
  previous = os.umask(0o022)
  yield os.umask
  os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_files_get_the_permissions_the_umask_allows(tmp_path, umask, mask):
  umask(mask)
  path = tmp_path / "out.bin"
  safe_write.write_file_atomic(str(path), lambda f: f.write(b"data"))
  assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
  assert path.read_bytes() == b"data"
  assert os.umask(mask) == mask  # the umask itself is left as it was


def test_existing_files_are_replaced_only_with_overwrite(tmp_path):
  path = tmp_path / "out.bin"
  path.write_bytes(b"precious")
  with pytest.raises(FileExistsError, match="overwrite"):
    safe_write.write_file_atomic(str(path), lambda f: f.write(b"new"))
  assert path.read_bytes() == b"precious"
  safe_write.write_file_atomic(str(path), lambda f: f.write(b"new"),
                               overwrite=True)
  assert path.read_bytes() == b"new"
  assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_write_names_the_output_and_leaves_nothing(tmp_path):
  path = tmp_path / "out.bin"

  def write(f):
    f.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device")

  with pytest.raises(OSError) as error:
    safe_write.write_file_atomic(str(path), write)
  assert error.value.filename == str(path)
  assert error.value.errno == errno.ENOSPC
  assert os.listdir(tmp_path) == []


def test_bad_output_paths_fail_before_any_work(tmp_path):
  calls = []
  missing = tmp_path / "no" / "out.bin"
  with pytest.raises(FileNotFoundError, match="does not exist"):
    safe_write.write_file_atomic(str(missing), calls.append)
  with pytest.raises(IsADirectoryError, match="is a folder"):
    safe_write.check_writable(str(tmp_path), overwrite=True)
  assert not calls


def test_without_hard_links_the_file_is_renamed(tmp_path, monkeypatch):
  def no_links(source, target):
    raise OSError(errno.EPERM, "Operation not permitted")

  monkeypatch.setattr(os, "link", no_links)
  path = tmp_path / "out.bin"
  safe_write.write_file_atomic(str(path), lambda f: f.write(b"data"))
  assert path.read_bytes() == b"data"
  with pytest.raises(FileExistsError):
    safe_write.write_file_atomic(str(path), lambda f: f.write(b"new"))
  assert path.read_bytes() == b"data"
  assert os.listdir(tmp_path) == ["out.bin"]
