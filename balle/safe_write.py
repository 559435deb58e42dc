"""Atomic file writes that never replace an existing file by accident."""

import os
import tempfile


def write_file_atomic(path, write, overwrite=False):
  """Calls write(file) on a temporary file beside `path`, then renames it.

  Never replaces an existing `path` unless overwrite=True; a failed write
  leaves no partial file behind.
  """
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
  folder = os.path.dirname(os.path.abspath(path))
  handle, temporary = tempfile.mkstemp(
      dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(handle, "wb") as f:
      write(f)
    if overwrite:
      os.replace(temporary, path)
    else:
      _link_exclusive(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


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
