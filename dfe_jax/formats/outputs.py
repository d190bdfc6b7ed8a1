"""Safe outputs: files appear whole or not at all, and existing results are not clobbered."""

import contextlib
import io
import os
import uuid

import numpy as np

from dfe_jax.formats import filesystem


class OutputExistsError(FileExistsError):
  """An output is already there and `--overwrite` was not given."""


def check_writable_dir(path, overwrite):
  """Creates `path`, or stops if it already holds files and `overwrite` is false."""
  if filesystem.exists(path) and filesystem.listdir(path) and not overwrite:
    raise OutputExistsError(f"{path}: output directory is not empty; pass --overwrite to replace it")
  filesystem.makedirs(path)


def _tmp_name(path):
  return f"{path}.tmp-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_open(path, mode="w"):
  """Opens a temporary file beside `path` and renames it over `path` only on success."""
  tmp = _tmp_name(path)
  try:
    with filesystem.open(tmp, mode) as f:
      yield f
    filesystem.rename(tmp, path, overwrite=True)
  finally:
    if filesystem.exists(tmp):
      filesystem.remove(tmp)


def save_npz(path, **arrays):
  """Writes an `.npz` atomically (local or any path TensorFlow can open)."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with atomic_open(path, "wb") as f:
    f.write(buffer.getvalue())


class UnreadableFileError(ValueError):
  """A file is not what its name says: a corrupt, truncated or foreign `.npz`."""


def load_npz(path):
  """Reads an `.npz` (local or remote) into a dict of arrays; never unpickles anything."""
  with filesystem.open(path, "rb") as f:
    raw = f.read()
  try:
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except Exception:  # pylint: disable=broad-except  NumPy raises many types for foreign files.
    # NumPy's own message would advise unpickling the file; a user's file is never unpickled.
    raise UnreadableFileError(f"{path}: not a readable .npz file") from None


def absolute(path):
  """`path` made absolute unless it is a URL (gs://...); Orbax refuses relative paths."""
  return path if "://" in path else os.path.abspath(path)


def join(*parts):
  """Joins path parts; works for local paths and gs:// URLs alike."""
  return os.path.join(*parts)
