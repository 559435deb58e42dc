"""Atomic writes that never replace an existing file or folder by accident:
a file (`write_file_atomic`) or a whole folder (`staged_directory`) is
written beside its destination and renamed into place only when complete.
"""

import contextlib
import os
import shutil
import tempfile


def check_writable(path, overwrite=False):
  """Raises, naming `path`, if write_file_atomic(path) would certainly fail:
  called before expensive work so that a bad output path fails fast."""
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
  if os.path.isdir(path):
    raise IsADirectoryError(f"{path} is a folder")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{path}: folder {folder} does not exist")
  if not os.access(folder, os.W_OK | os.X_OK):
    raise PermissionError(f"{path}: folder {folder} is not writable")


def write_file_atomic(path, write, overwrite=False):
  """Calls write(file) on a temporary file beside `path`, then renames it.

  Never replaces an existing `path` unless overwrite=True; a failed write
  leaves no partial file behind and its error names `path`. The file gets the
  permissions the umask allows (0666 & ~umask), like open(path, "w").
  """
  check_writable(path, overwrite)
  folder = os.path.dirname(os.path.abspath(path))
  try:
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  except OSError as error:
    raise _naming(error, path) from None
  try:
    with os.fdopen(handle, "wb") as f:
      os.fchmod(f.fileno(), 0o666 & ~_umask())
      write(f)
    if overwrite:
      os.replace(temporary, path)
    else:
      _link_exclusive(temporary, path)
  except OSError as error:
    if isinstance(error, FileExistsError) or error.filename == path:
      raise
    raise _naming(error, path) from None
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def _naming(error, path):
  """`error` as an OSError about `path` (not the hidden temporary file)."""
  return OSError(error.errno, error.strerror or str(error), path)


def _umask():
  """The process umask (reading it means setting it: set it back at once)."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _link_exclusive(source, path):
  """Moves source to path, failing if path exists (no race window where the
  file system supports hard links)."""
  try:
    os.link(source, path)
  except FileExistsError:
    raise FileExistsError(
        f"{path} exists; pass --overwrite to replace it") from None
  except OSError:  # No hard links here: check, then rename.
    if os.path.exists(path):
      raise FileExistsError(
          f"{path} exists; pass --overwrite to replace it") from None
    os.replace(source, path)


@contextlib.contextmanager
def staged_directory(directory, overwrite=False):
  """Yields an empty staging folder beside `directory` to fill; when the
  block ends without error, the staging folder replaces `directory`.

  Never replaces an existing `directory` unless overwrite=True; a failed
  block leaves `directory` as it was and no staging folder behind.
  """
  directory = os.path.abspath(directory)
  if os.path.exists(directory) and not overwrite:
    raise FileExistsError(f"{directory} exists; pass --overwrite to replace it")
  parent = os.path.dirname(directory)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(
      dir=parent, prefix=f".{os.path.basename(directory)}.", suffix=".tmp")
  try:
    yield staging
    old = staging + ".old"
    if os.path.exists(directory):
      os.replace(directory, old)
    os.replace(staging, directory)
    shutil.rmtree(old, ignore_errors=True)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
