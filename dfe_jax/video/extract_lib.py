"""Face video → per-video feature file (.npz) with OpenCV decoding and MediaPipe FaceLandmarker.

Each video becomes `<output_dir>/<video_id>.npz` in the DESIGN.md layout: `features` float32
[T, 51] (the `arkit51` blendshapes; plus `head_pitch, head_yaw, head_roll` in radians when
head rotation is on, which makes the set `custom`), `valid` bool [T], `fps` (the container's),
`feature_names`, `au` float32 [T, A] / `au_names` (blendshape-derived, see action_units.py),
optionally `landmarks` float32 [T, 478, 3] (MediaPipe's normalised x, y in [0, 1] of the image
and relative depth z), `jitter` (`jitter.frame_jitter` of the blendshapes: median frame-to-frame
mean |Δ|) and `extractor` (versions, model hash, face mode). Frames without a face are zeros with
`valid=False`. A `manifest.csv` beside them feeds `python -m dfe_jax.ingest`.
A video that cannot be opened or yields no frame fails alone (the batch goes on); one that
stops early (truncated) is kept with a warning naming decoded vs declared frame counts.

One face (`max_faces=1`, the default): FaceLandmarker's own VIDEO-mode tracking follows the face
(it re-runs its face detector only when the face is lost), so the output equals a direct
`num_faces=1` VIDEO-mode call on the same frames. Several faces (`max_faces` > 1): FaceLandmarker
looks for further faces on every frame, so its crop is re-detected each frame and the features
are noisier (about twice the jitter); `face_tracking` keeps the one person `follow` names.
"""

import concurrent.futures
import contextlib
import csv
import dataclasses
import glob
import importlib.abc
import importlib.metadata
import math
import multiprocessing
import os
import pathlib
import sys
import tempfile
import time

from absl import logging
import numpy as np

from dfe_jax.formats import feature_spaces
from dfe_jax.video import action_units
from dfe_jax.video import face_tracking
from dfe_jax.video import jitter
from dfe_jax.video import landmarker_asset

HEAD_ROTATION_NAMES = ("head_pitch", "head_yaw", "head_roll")
NUM_LANDMARKS = 478
MANIFEST_COLUMNS = ("video_id", "subject_id", "path", "video_path")
FOLLOW_COLUMN = "follow"  # Input manifest only: the face to keep in this video (Options.follow).


class VideoError(Exception):
  """A video that cannot be opened or decoded; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Options:
  """What to extract and how; the flags of `dfe_jax.extract` map onto these fields."""
  landmarks: bool = False
  head_rotation: bool = False
  max_frames: int = 0  # 0 = every frame; tests use a cap to stay fast.
  max_faces: int = 1  # 1: MediaPipe's tracking; > 1: re-detect every frame, keep `follow`.
  follow: str = "largest"  # Which face to keep when max_faces > 1 (face_tracking.FOLLOW).
  min_face_detection_confidence: float = 0.5
  min_face_presence_confidence: float = 0.5
  min_tracking_confidence: float = 0.5
  overwrite: bool = False
  log_every_seconds: float = 10.0


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  """One input video: ids, source path and any extra manifest columns (labels, split)."""
  video_id: str
  subject_id: str
  video_path: str
  extra: tuple = ()  # (column, value) pairs carried into the output manifest.
  follow: str = ""  # The manifest's `follow` for this video; "" = Options.follow.


@dataclasses.dataclass
class Outcome:
  """What happened to one video."""
  entry: VideoEntry
  status: str  # "extracted", "skipped" (output existed) or "failed".
  output: str = ""
  frames: int = 0
  valid_frames: int = 0
  seconds: float = 0.0
  jitter: float = float("nan")
  error: str = ""


def read_entries(spec):
  """Lists the videos named by a `.csv` manifest or comma-separated paths/globs."""
  if spec.endswith(".csv") and os.path.isfile(spec):
    return _entries_from_manifest(spec)
  paths = []
  for pattern in (p.strip() for p in spec.split(",") if p.strip()):
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    paths.extend(m for m in matches if os.path.isfile(m))
  paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
  if not paths:
    raise ValueError(f"--videos={spec}: no video file matches")
  entries = [VideoEntry(pathlib.Path(p).stem, pathlib.Path(p).stem, p) for p in paths]
  _check_unique(entries)
  return entries


def _entries_from_manifest(manifest):
  """Reads `video_path` (or `path`), optional `video_id`, `subject_id` and extra columns."""
  with open(manifest, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f"{manifest}: manifest has no rows")
  column = "video_path" if "video_path" in rows[0] else "path"
  if column not in rows[0]:
    raise ValueError(f"{manifest}: manifest needs a `video_path` (or `path`) column")
  base = os.path.dirname(os.path.abspath(manifest))
  entries = []
  for line, row in enumerate(rows, 2):
    video_path = os.path.join(base, os.path.expanduser(row[column]))
    video_id = row.get("video_id") or pathlib.Path(video_path).stem
    extra = tuple((k, v) for k, v in row.items()
                  if k not in MANIFEST_COLUMNS + (FOLLOW_COLUMN,) and k is not None)
    follow = (row.get(FOLLOW_COLUMN) or "").strip()
    if follow and follow not in face_tracking.FOLLOW:
      raise ValueError(f"{manifest} line {line}: follow={follow!r}, expected one of "
                       f"{', '.join(face_tracking.FOLLOW)} (or empty)")
    entries.append(VideoEntry(video_id, row.get("subject_id") or video_id,
                              os.path.abspath(video_path), extra, follow))
  _check_unique(entries)
  return entries


def _check_unique(entries):
  """Fails on two videos with one id, since their outputs would overwrite each other."""
  seen = {}
  for entry in entries:
    if entry.video_id in seen:
      raise ValueError(f"video_id {entry.video_id!r} names both {seen[entry.video_id]} and "
                       f"{entry.video_path}; give ids in a manifest (`video_id` column)")
    seen[entry.video_id] = entry.video_path


def options_for(entry, options):
  """`options` with the entry's own `follow` (from its manifest row), checked."""
  if entry.follow:
    options = dataclasses.replace(options, follow=entry.follow)
  check_face_mode(options, entry.video_id)
  return options


def check_face_mode(options, name):
  """Raises ValueError (naming `name`) for a `follow` that the `max_faces` cannot serve."""
  if options.follow not in face_tracking.FOLLOW:
    raise ValueError(f"{name}: follow={options.follow!r}, expected one of "
                     f"{', '.join(face_tracking.FOLLOW)}")
  if options.follow != "largest" and options.max_faces < 2:
    raise ValueError(f"{name}: follow={options.follow} picks one of several faces; it needs "
                     "--max_faces=2 or more")


class _HideTensorFlow(importlib.abc.MetaPathFinder):
  """Makes `import tensorflow` fail while mediapipe is imported.

  mediapipe imports TensorFlow only for a docs decorator, and falls back to a no-op when TF is
  absent; with TF installed (it is, for ingest) that costs seconds and hundreds of MB in every
  extraction process. Nothing is cached, so a later `import tensorflow` works as usual.
  """

  def find_spec(self, fullname, path=None, target=None):
    del path, target  # Unused.
    if fullname == "tensorflow" or fullname.startswith("tensorflow."):
      raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
    return None


def _import_mediapipe():
  """Imports mediapipe's Tasks API (without TensorFlow), or says how to install it."""
  hide = None if "tensorflow" in sys.modules else _HideTensorFlow()
  if hide:
    sys.meta_path.insert(0, hide)
  try:
    import mediapipe as mp  # pylint: disable=g-import-not-at-top
    from mediapipe.tasks.python import BaseOptions  # pylint: disable=g-import-not-at-top
    from mediapipe.tasks.python import vision  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"mediapipe is needed for extraction ({e}); "
                      "install it with `pip install -e '.[video]'`") from e
  finally:
    if hide:
      sys.meta_path.remove(hide)
  return mp, BaseOptions, vision


@contextlib.contextmanager
def open_landmarker(model_path, options):
  """Yields a VIDEO-mode FaceLandmarker, closed on exit (its __del__ is unreliable at exit)."""
  _, base_options, vision = _import_mediapipe()
  landmarker_options = vision.FaceLandmarkerOptions(
      base_options=base_options(model_asset_path=str(model_path)),
      running_mode=vision.RunningMode.VIDEO,
      num_faces=options.max_faces,
      min_face_detection_confidence=options.min_face_detection_confidence,
      min_face_presence_confidence=options.min_face_presence_confidence,
      min_tracking_confidence=options.min_tracking_confidence,
      output_face_blendshapes=True,
      output_facial_transformation_matrixes=True)
  landmarker = vision.FaceLandmarker.create_from_options(landmarker_options)
  try:
    yield landmarker
  finally:
    landmarker.close()


def _open_video(path):
  """Opens a video with OpenCV; returns (capture, fps, declared frame count)."""
  import cv2  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise VideoError(f"{path}: no such file")
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    capture.release()
    raise VideoError(f"{path}: cannot open as a video (corrupt or unsupported format)")
  fps = capture.get(cv2.CAP_PROP_FPS)
  declared = int(max(0, capture.get(cv2.CAP_PROP_FRAME_COUNT)))
  if not fps or not math.isfinite(fps) or fps <= 0:
    logging.warning("%s: container gives no frame rate; assuming 30 fps", path)
    fps = 30.0
  return capture, float(fps), declared


def _pick_face(result, tracked, width, height, follow):
  """Chooses a face in one FaceLandmarker result: (box, blendshapes, rotation, landmarks)."""
  faces = [np.array([(p.x, p.y, p.z) for p in face], np.float32)
           for face in result.face_landmarks]
  boxes = [face_tracking.face_box(f[:, :2] * (width, height)) for f in faces]
  allowed = face_tracking.faces_on_side(boxes, follow, width)
  chosen = face_tracking.select_face([boxes[i] for i in allowed], tracked)
  if chosen is None:
    return None
  chosen = allowed[chosen]
  scores = {c.category_name: c.score for c in result.face_blendshapes[chosen]}
  row = np.array([scores[n] for n in feature_spaces.ARKIT51], np.float32)
  rotation = face_tracking.head_rotation(result.facial_transformation_matrixes[chosen])
  return boxes[chosen], row, rotation, faces[chosen]


def extract_video(path, model_path, options=Options(), label=""):
  """Runs FaceLandmarker over one video; returns the arrays of its .npz (see module doc)."""
  import cv2  # pylint: disable=g-import-not-at-top
  check_face_mode(options, path)
  mp, _, _ = _import_mediapipe()
  capture, fps, declared = _open_video(path)
  limit = options.max_frames if options.max_frames > 0 else None
  total = min(declared, limit) if limit and declared else (declared or limit or 0)
  blendshapes, rotations, landmarks, valid = [], [], [], []
  tracked, last_ts = None, -1
  start = last_log = time.monotonic()
  try:
    with open_landmarker(model_path, options) as landmarker:
      while limit is None or len(valid) < limit:
        ok, frame = capture.read()
        if not ok:
          break
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        # VIDEO mode needs strictly increasing timestamps; frame index / fps gives them.
        timestamp = max(last_ts + 1, int(round(len(valid) * 1000.0 / fps)))
        last_ts = timestamp
        result = landmarker.detect_for_video(
            mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), timestamp)
        picked = _pick_face(result, tracked, width, height, options.follow)
        valid.append(picked is not None)
        if picked is None:
          blendshapes.append(np.zeros(len(feature_spaces.ARKIT51), np.float32))
          rotations.append((0.0, 0.0, 0.0))
          landmarks.append(None)
        else:
          tracked, row, rotation, points = picked
          blendshapes.append(row)
          rotations.append(rotation)
          landmarks.append(points if options.landmarks else None)
        now = time.monotonic()
        if now - last_log >= options.log_every_seconds:
          last_log = now
          rate = len(valid) / (now - start)
          eta = f", ETA {(total - len(valid)) / rate:.0f} s" if total > len(valid) else ""
          logging.info("%s frame %d/%s, %.1f frames/s%s", label, len(valid),
                       total or "?", rate, eta)
  finally:
    capture.release()
  frames = len(valid)
  if frames == 0:
    raise VideoError(f"{path}: no frame could be decoded (corrupt or empty video)")
  if limit is None and declared and frames < 0.9 * declared:
    logging.warning("%s: decoded %d of the %d frames the container declares (truncated?)",
                    path, frames, declared)
  valid_arr = np.array(valid, bool)
  if not valid_arr.any():
    logging.warning("%s: no face found in any of its %d frames; all frames invalid",
                    path, frames)
  feats = np.stack(blendshapes)
  names = feature_spaces.ARKIT51
  au, au_names = action_units.from_blendshapes(feats)
  au[~valid_arr] = 0.0
  steadiness = jitter.frame_jitter(feats, valid_arr)
  if options.head_rotation:
    feats = np.concatenate([feats, np.array(rotations, np.float32)], axis=1)
    names = names + HEAD_ROTATION_NAMES
  arrays = {
      "features": feats.astype(np.float32),
      "valid": valid_arr,
      "fps": np.float64(fps),
      "feature_names": np.array(names),
      "au": au,
      "au_names": np.array(au_names),
      "jitter": np.float64(steadiness),
      "extractor": np.array(_extractor_string(model_path, options)),
  }
  if options.landmarks:
    zeros = np.zeros((NUM_LANDMARKS, 3), np.float32)
    arrays["landmarks"] = np.stack([zeros if l is None else l for l in landmarks])
  return arrays


def _extractor_string(model_path, options):
  """Provenance: mediapipe/opencv versions, the model hash and the face mode."""
  versions = []
  for dist in ("mediapipe", "opencv-contrib-python", "opencv-python-headless", "opencv-python"):
    try:
      versions.append(f"{dist}=={importlib.metadata.version(dist)}")
    except importlib.metadata.PackageNotFoundError:
      pass
  faces = (f"num_faces={options.max_faces} follow={options.follow}" if options.max_faces > 1
           else "num_faces=1 (MediaPipe tracking)")
  return " ".join(versions + [f"{pathlib.Path(model_path).name} sha256:{landmarker_asset.SHA256}",
                              faces])


def write_npz_atomic(path, arrays):
  """Writes arrays to `path` through a temporary file in the same directory, then renames."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_manifest(output_dir, outcomes):
  """Writes `manifest.csv` (ingest's input) for every video that has an output file."""
  rows = [o for o in outcomes if o.status in ("extracted", "skipped")]
  extra_columns = list(dict.fromkeys(k for o in rows for k, _ in o.entry.extra))
  path = pathlib.Path(output_dir) / "manifest.csv"
  fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=".manifest.", suffix=".csv.tmp")
  with os.fdopen(fd, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(MANIFEST_COLUMNS + tuple(extra_columns))
    for o in rows:
      extra = dict(o.entry.extra)
      # `path` is relative to the manifest (ingest resolves it so), so output_dir can move.
      writer.writerow([o.entry.video_id, o.entry.subject_id, pathlib.Path(o.output).name,
                       o.entry.video_path]
                      + [extra.get(c, "") for c in extra_columns])
  os.replace(tmp, path)
  return path


def _extract_one(entry, out, model_path, options, label):
  """Extracts and writes one video; returns its Outcome (failures are caught and described)."""
  outcome = Outcome(entry, "failed", output=str(out))
  if out.exists() and not options.overwrite:
    outcome.status = "skipped"
    logging.info("%s %s exists; skipped (--overwrite to redo)", label, out)
    return outcome
  start = time.monotonic()
  try:
    arrays = extract_video(entry.video_path, model_path, options_for(entry, options), label)
  except VideoError as e:
    outcome.error = str(e)
  except Exception as e:  # pylint: disable=broad-except
    # One bad video (a decoder or MediaPipe error) must not stop a long batch.
    outcome.error = f"{entry.video_path}: {type(e).__name__}: {e}"
  if outcome.error:
    logging.error("%s FAILED: %s", label, outcome.error)
    return outcome
  outcome.seconds = time.monotonic() - start
  outcome.frames = int(arrays["valid"].size)
  outcome.valid_frames = int(arrays["valid"].sum())
  outcome.jitter = float(arrays["jitter"])
  write_npz_atomic(out, arrays)
  outcome.status = "extracted"
  logging.info("%s %d frames, %d with a face (%.0f%%), jitter %.4f, %.1f frames/s, %.1f s -> %s",
               label, outcome.frames, outcome.valid_frames,
               100.0 * outcome.valid_frames / outcome.frames, outcome.jitter,
               outcome.frames / max(outcome.seconds, 1e-9), outcome.seconds, out)
  return outcome


def _init_worker(verbosity):
  """Gives spawned workers the parent's log level (absl defaults to WARNING outside app.run)."""
  logging.use_absl_handler()
  logging.set_verbosity(verbosity)
  _import_mediapipe()


def extract_all(entries, output_dir, model_asset=None, options=Options(), num_processes=1):
  """Extracts every video into `output_dir`, going on past failures; returns the outcomes.

  One process keeps about one core busy (FaceLandmarker runs a frame at a time), so
  `num_processes` > 1 extracts that many videos at once, each worker with its own landmarker.
  """
  for entry in entries:
    options_for(entry, options)  # A face mode that cannot work fails before any video.
  model_path = landmarker_asset.resolve(model_asset)
  # Import up front: a missing install fails before any work, and the import (mediapipe pulls
  # in TensorFlow when it is installed) is not charged to the first video's frames/s.
  _import_mediapipe()
  output_dir = pathlib.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  logging.info("model %s; %d videos -> %s (%d process%s)", model_path, len(entries), output_dir,
               num_processes, "es" if num_processes > 1 else "")
  jobs = [(entry, output_dir / f"{entry.video_id}.npz", model_path, options,
           f"[{k}/{len(entries)}] {entry.video_id}:") for k, entry in enumerate(entries, 1)]
  start = time.monotonic()
  if num_processes > 1 and len(jobs) > 1:
    # Spawn, not fork: the parent may hold TensorFlow/MediaPipe threads that fork would break.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        min(num_processes, len(jobs)), mp_context=context, initializer=_init_worker,
        initargs=(logging.get_verbosity(),)) as pool:
      outcomes = list(pool.map(_extract_one, *zip(*jobs)))
  else:
    outcomes = [_extract_one(*job) for job in jobs]
  write_manifest(output_dir, outcomes)
  log_summary(outcomes, output_dir, time.monotonic() - start)
  return outcomes


def log_summary(outcomes, output_dir, wall_seconds):
  """Logs counts, overall frames/s (wall clock) and every failure with its reason."""
  done = [o for o in outcomes if o.status == "extracted"]
  failed = [o for o in outcomes if o.status == "failed"]
  frames = sum(o.frames for o in done)
  logging.info("extracted %d, skipped %d (existing), failed %d of %d videos; %d frames in "
               "%.1f s (%.1f frames/s); manifest %s", len(done),
               sum(o.status == "skipped" for o in outcomes), len(failed), len(outcomes),
               frames, wall_seconds, frames / wall_seconds if wall_seconds else 0.0,
               pathlib.Path(output_dir) / "manifest.csv")
  for o in failed:
    logging.error("failed: %s", o.error)
