"""Provenance every output carries: content hashes, the git revision, library versions.

Standard library only, so NumPy-and-scikit-learn tools (the probe) can use it too.
"""

import hashlib
import importlib.metadata
import os
import subprocess

from dfe_jax.formats import filesystem

_BLOCK = 1 << 22
# The libraries whose versions a trained model or its export records.
TRAINING_LIBRARIES = ("dfe_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                      "tensorflow-cpu", "numpy")


def sha256_of(path, opener=filesystem.open):
  """Hex sha256 of a file's bytes; `opener` may be `tf.io.gfile.GFile` for gs:// paths."""
  digest = hashlib.sha256()
  with opener(path, "rb") as f:
    while block := f.read(_BLOCK):
      digest.update(block)
  return digest.hexdigest()


def git_revision():
  """The commit of the code that runs, or "unknown" outside a git checkout."""
  try:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5,
                          check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def versions(distributions):
  """{distribution: installed version} for those that are installed."""
  found = {}
  for name in distributions:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


def training_run():
  """Library versions and the git revision of the code that trains or exports a model."""
  return {"versions": versions(TRAINING_LIBRARIES), "git_revision": git_revision()}
