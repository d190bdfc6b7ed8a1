"""Per-video expression files: the readers of `.npz`, `.npy`, `.csv` and EMOCA-style folders,
and the one `.npz` writer (`write_npz`: extract and the synthetic corpus write through it).

Every reader returns a `Video` or raises `VideoFileError` naming the file and what is wrong.
"""

import csv
import dataclasses
import io
import os

import numpy as np

from dfe_jax.formats import feature_spaces
from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs

# CSV columns that describe frames rather than being features.
_CSV_META_COLUMNS = ("frame", "timestamp", "time", "valid")


class VideoFileError(ValueError):
  """A per-video feature file is unusable; the one-line message names the file."""


@dataclasses.dataclass
class Video:
  """One video's frames: features [T, D] float32, valid [T] bool, its frame rate and names."""
  features: np.ndarray
  valid: np.ndarray
  fps: float | None
  feature_names: tuple
  au: np.ndarray | None = None
  au_names: tuple | None = None


def default_names(num_features):
  """Names for unnamed vectors: a known space when D matches one, else `f_000...`."""
  for names in feature_spaces.SPACES.values():
    if len(names) == num_features:
      return names
  return tuple(f"f_{i:03d}" for i in range(num_features))


def _read_npz(path):
  try:
    data = outputs.load_npz(path)
  except outputs.UnreadableFileError as e:
    raise VideoFileError(str(e)) from None
  if "features" not in data:
    raise VideoFileError(f"{path}: missing array 'features' (has: {', '.join(data)})")
  x = data["features"]
  _check_matrix(path, x)
  valid = data["valid"].astype(bool) if "valid" in data else np.ones(len(x), bool)
  if valid.shape != (len(x),):
    raise VideoFileError(f"{path}: 'valid' has shape {valid.shape}, expected ({len(x)},)")
  names = (tuple(str(n) for n in data["feature_names"]) if "feature_names" in data
           else default_names(x.shape[1]))
  if len(names) != x.shape[1]:
    raise VideoFileError(f"{path}: {len(names)} feature_names for {x.shape[1]} feature columns")
  fps = float(data["fps"]) if "fps" in data else None
  au = au_names = None
  if "au" in data:
    au = data["au"].astype(np.float32)
    au_names = tuple(str(n) for n in data["au_names"]) if "au_names" in data else tuple(
        f"AU_{i:02d}" for i in range(au.shape[1]))
  return Video(x.astype(np.float32), valid, fps, names, au, au_names)


def _check_matrix(path, x):
  if x.ndim != 2:
    raise VideoFileError(f"{path}: features must be a [frames, features] matrix, got shape "
                         f"{x.shape}")
  if x.shape[0] == 0:
    raise VideoFileError(f"{path}: empty video (0 frames)")
  if x.shape[1] == 0:
    raise VideoFileError(f"{path}: no feature columns")
  if not np.issubdtype(x.dtype, np.number):
    raise VideoFileError(f"{path}: features are {x.dtype}, not numbers")


def _read_npy(path):
  with filesystem.open(path, "rb") as f:
    try:
      x = np.load(io.BytesIO(f.read()), allow_pickle=False)
    except Exception as e:
      raise VideoFileError(f"{path}: not a readable .npy file ({e})") from None
  _check_matrix(path, x)
  return Video(x.astype(np.float32), np.ones(len(x), bool), None, default_names(x.shape[1]))


def _read_csv(path):
  with filesystem.open(path, "r") as f:
    rows = list(csv.reader(f))
  if len(rows) < 2:
    raise VideoFileError(f"{path}: empty video (no data rows)")
  header = [h.strip() for h in rows[0]]
  keep = [i for i, h in enumerate(header) if h.lower() not in _CSV_META_COLUMNS]
  try:
    table = np.array([[float(v) if v.strip() else np.nan for v in r] for r in rows[1:]])
  except ValueError as e:
    raise VideoFileError(f"{path}: non-numeric value ({e})") from None
  if table.ndim != 2 or table.shape[1] != len(header):
    raise VideoFileError(f"{path}: rows do not all have {len(header)} columns")
  x = table[:, keep]
  _check_matrix(path, x)
  valid = np.ones(len(x), bool)
  if "valid" in [h.lower() for h in header]:
    valid = table[:, [h.lower() for h in header].index("valid")] > 0
  return Video(x.astype(np.float32), valid, None, tuple(header[i] for i in keep))


def _read_emoca_folder(path):
  """A folder of per-frame outputs, sorted by name.

  Either one `.npy` vector per frame, or one sub-folder per frame holding EMOCA's `exp.npy`
  (50 expression coefficients) and `pose.npy` (global rotation 3 + jaw 3), which become the
  `flame53` vector `exp_00..exp_49, jaw_0..jaw_2`.
  """
  entries = sorted(filesystem.listdir(path))
  frame_dirs = [e.rstrip("/") for e in entries if filesystem.isdir(os.path.join(path, e))]
  if frame_dirs:
    rows = []
    for name in frame_dirs:
      frame = os.path.join(path, name)
      try:
        exp = np.load(io.BytesIO(filesystem.open(os.path.join(frame, "exp.npy"), "rb").read()))
        pose = np.load(io.BytesIO(filesystem.open(os.path.join(frame, "pose.npy"), "rb").read()))
      except Exception as e:
        raise VideoFileError(f"{frame}: EMOCA frame needs readable exp.npy and pose.npy "
                             f"({e})") from None
      exp, pose = exp.reshape(-1), pose.reshape(-1)
      if exp.size < 50 or pose.size < 6:
        raise VideoFileError(f"{frame}: exp.npy has {exp.size} values (need 50), pose.npy "
                             f"{pose.size} (need 6)")
      rows.append(np.concatenate([exp[:50], pose[3:6]]))
    x = np.stack(rows)
    return Video(x.astype(np.float32), np.ones(len(x), bool), None, feature_spaces.FLAME53)
  files = [e for e in entries if e.endswith(".npy")]
  if not files:
    raise VideoFileError(f"{path}: empty folder (no per-frame .npy files or frame folders)")
  vectors = []
  for name in files:
    v = np.load(io.BytesIO(filesystem.open(os.path.join(path, name), "rb").read())).reshape(-1)
    if vectors and v.size != vectors[0].size:
      raise VideoFileError(f"{os.path.join(path, name)}: {v.size} values, other frames have "
                           f"{vectors[0].size}")
    vectors.append(v)
  x = np.stack(vectors)
  return Video(x.astype(np.float32), np.ones(len(x), bool), None, default_names(x.shape[1]))


def frame_rate(path, file_fps, manifest_fps=""):
  """A video's frame rate, the one rule: the manifest's `fps` value when given (it overrides),
  else `file_fps`, the rate its feature file `path` stores (None: the file stores none)."""
  if (manifest_fps or "").strip():
    return float(manifest_fps)
  if file_fps is None:
    raise VideoFileError(f"{path}: no frame rate; add an 'fps' column to the manifest")
  return file_fps


def write_npz(path, features, valid, fps, feature_names, **extra):
  """Writes one per-video `.npz` atomically (local or remote): the arrays `read_video` reads,
  checked against each other, plus `extra` arrays (au, au_names, landmarks, jitter, ...)."""
  features = np.asarray(features, np.float32)
  valid = np.asarray(valid, bool)
  _check_matrix(path, features)
  if valid.shape != (len(features),) or len(feature_names) != features.shape[1]:
    raise VideoFileError(f"{path}: refusing to write {features.shape} features with valid "
                         f"{valid.shape} and {len(feature_names)} names")
  outputs.save_npz(path, features=features, valid=valid, fps=fps,
                   feature_names=np.asarray(feature_names, dtype=str), **extra)


def read_video(path):
  """Reads one video's expression features from a `.npz`, `.npy`, `.csv` or folder."""
  if not filesystem.exists(path):
    raise VideoFileError(f"{path}: file not found")
  if filesystem.isdir(path):
    return _read_emoca_folder(path)
  suffix = os.path.splitext(path)[1].lower()
  reader = {".npz": _read_npz, ".npy": _read_npy, ".csv": _read_csv}.get(suffix)
  if reader is None:
    raise VideoFileError(f"{path}: unknown file type '{suffix}' (expected .npz, .npy, .csv or a "
                     "folder of per-frame .npy)")
  return reader(path)
