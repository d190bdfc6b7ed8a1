"""Files on local disk or at any URL TensorFlow can open (`gs://...`), with one API.

Local paths use the standard library; only a path with a scheme (`gs://`, `s3://`, ...) loads
`tf.io.gfile`, so reading and writing local files never imports TensorFlow.
"""

import builtins
import glob as glob_lib
import os
import shutil


def is_remote(path):
  """Whether `path` is a URL (`gs://bucket/...`) rather than a local path."""
  return "://" in str(path)


def _gfile():
  from tensorflow.io import gfile  # pylint: disable=g-import-not-at-top
  return gfile


def open(path, mode="r"):  # pylint: disable=redefined-builtin
  """A file object for `path` (text or binary by `mode`, as `open`)."""
  if is_remote(path):
    return _gfile().GFile(path, mode)
  return builtins.open(path, mode)


def exists(path):
  return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path):
  return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def listdir(path):
  """Entry names in a folder (no trailing slashes)."""
  if is_remote(path):
    return [e.rstrip("/") for e in _gfile().listdir(path)]
  return os.listdir(path)


def glob(pattern):
  return _gfile().glob(pattern) if is_remote(pattern) else glob_lib.glob(pattern)


def makedirs(path):
  if is_remote(path):
    _gfile().makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


def rename(source, target, overwrite=False):
  """Moves `source` to `target` (atomic on one local file system)."""
  if is_remote(source) or is_remote(target):
    _gfile().rename(source, target, overwrite=overwrite)
  elif overwrite:
    os.replace(source, target)
  else:
    if os.path.exists(target):
      raise FileExistsError(f"{target}: already exists")
    os.rename(source, target)


def remove(path):
  if is_remote(path):
    _gfile().remove(path)
  else:
    os.remove(path)


def rmtree(path):
  if is_remote(path):
    _gfile().rmtree(path)
  else:
    shutil.rmtree(path)
