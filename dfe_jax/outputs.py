"""Safe outputs: files appear whole or not at all, and existing results are not clobbered."""

import contextlib
import io
import os
import uuid

import numpy as np
from tensorflow.io import gfile


class OutputExistsError(FileExistsError):
  """An output is already there and `--overwrite` was not given."""


def check_writable_dir(path, overwrite):
  """Creates `path`, or stops if it already holds files and `overwrite` is false."""
  if gfile.exists(path) and gfile.listdir(path) and not overwrite:
    raise OutputExistsError(f"{path}: output directory is not empty; pass --overwrite to replace it")
  gfile.makedirs(path)


def _tmp_name(path):
  return f"{path}.tmp-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_open(path, mode="w"):
  """Opens a temporary file beside `path` and renames it over `path` only on success."""
  tmp = _tmp_name(path)
  try:
    with gfile.GFile(tmp, mode) as f:
      yield f
    gfile.rename(tmp, path, overwrite=True)
  finally:
    if gfile.exists(tmp):
      gfile.remove(tmp)


def save_npz(path, **arrays):
  """Writes an `.npz` atomically (local or any path TensorFlow can open)."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with atomic_open(path, "wb") as f:
    f.write(buffer.getvalue())


def load_npz(path):
  """Reads an `.npz` from any path TensorFlow can open, into a dict of arrays."""
  with gfile.GFile(path, "rb") as f:
    with np.load(io.BytesIO(f.read()), allow_pickle=False) as data:
      return {k: data[k] for k in data.files}


def absolute(path):
  """`path` made absolute unless it is a URL (gs://...); Orbax refuses relative paths."""
  return path if "://" in path else os.path.abspath(path)


def join(*parts):
  """Joins path parts; works for local paths and gs:// URLs alike."""
  return os.path.join(*parts)
