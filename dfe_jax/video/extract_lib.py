"""Face video → per-video feature file (.npz) with OpenCV decoding and MediaPipe FaceLandmarker.

Each video becomes `<output_dir>/<video_id>.npz` in the DESIGN.md layout: `features` float32
[T, 51] (the `arkit51` blendshapes; plus `head_pitch, head_yaw, head_roll` in radians when
head rotation is on, which makes the set `custom`), `valid` bool [T], `fps` (the container's),
`feature_names`, `au` float32 [T, A] / `au_names` (blendshape-derived, see action_units.py),
optionally `landmarks` float32 [T, 478, 3] (MediaPipe's normalised x, y in [0, 1] of the image
and relative depth z), `jitter` (`jitter.frame_jitter` of the blendshapes: median frame-to-frame
mean |Δ|) and `extractor` (versions, model hash, face mode). Frames without a face are zeros with
`valid=False`. A `manifest.csv` beside them feeds `python -m dfe_jax.ingest`.
A video that cannot be opened or yields no frame fails alone (the batch goes on, and
`failures.csv` beside the manifest lists it with the reason); one that stops early (truncated)
is kept with a warning naming decoded vs declared frame counts. `extract_all` runs the videos
as an Apache Beam pipeline (`extract_pipeline`): on this machine's cores by default, or on
Dataflow, Flink or Spark through Beam's options.

One face (`max_faces=1`, the default): FaceLandmarker's own VIDEO-mode tracking follows the face
(it re-runs its face detector only when the face is lost), so the output equals a direct
`num_faces=1` VIDEO-mode call on the same frames. Several faces (`max_faces` > 1): FaceLandmarker
looks for further faces on every frame, so its crop is re-detected each frame and the features
are noisier (about twice the jitter); `face_tracking` keeps the one person `follow` names.
"""

import contextlib
import csv
import dataclasses
import glob
import importlib.abc
import importlib.metadata
import io
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile
import time
import uuid

from absl import logging
import numpy as np

from dfe_jax.formats import feature_spaces
from dfe_jax.formats import filesystem
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import outputs
from dfe_jax.formats import video_files
from dfe_jax.video import action_units
from dfe_jax.video import face_tracking
from dfe_jax.video import jitter
from dfe_jax.video import landmarker_asset

HEAD_ROTATION_NAMES = ("head_pitch", "head_yaw", "head_roll")
FAILURES_FILE = "failures.csv"
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

  def to_json(self):
    """A JSON-able dict (the pipeline hands outcomes to the launcher as a file)."""
    return {**dataclasses.asdict(self), "entry": {**dataclasses.asdict(self.entry),
                                                  "extra": [list(kv) for kv in self.entry.extra]}}

  @classmethod
  def from_json(cls, d):
    entry = VideoEntry(**{**d["entry"], "extra": tuple(tuple(kv) for kv in d["entry"]["extra"])})
    return cls(**{**d, "entry": entry})


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
    video_path = row[column]
    if not filesystem.is_remote(video_path):  # gs:// videos are copied to each worker's disk.
      video_path = os.path.abspath(os.path.join(base, os.path.expanduser(video_path)))
    video_id = row.get("video_id") or pathlib.Path(video_path).stem
    extra = tuple((k, v) for k, v in row.items()
                  if k not in MANIFEST_COLUMNS + (FOLLOW_COLUMN,) and k is not None)
    follow = (row.get(FOLLOW_COLUMN) or "").strip()
    if follow and follow not in face_tracking.FOLLOW:
      raise ValueError(f"{manifest} line {line}: follow={follow!r}, expected one of "
                       f"{', '.join(face_tracking.FOLLOW)} (or empty)")
    entries.append(VideoEntry(video_id, row.get("subject_id") or video_id, video_path, extra,
                              follow))
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


def import_mediapipe():
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
  _, base_options, vision = import_mediapipe()
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
  mp, _, _ = import_mediapipe()
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


def _write_csv(path, header, rows):
  """Writes a CSV atomically (local or gs://)."""
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(header)
  writer.writerows(rows)
  with outputs.atomic_open(str(path), "w") as f:
    f.write(buffer.getvalue())
  return path


def write_manifest(output_dir, outcomes):
  """Writes `manifest.csv` (ingest's input) for every video that has an output file."""
  rows = [o for o in outcomes if o.status in ("extracted", "skipped")]
  extra_columns = list(dict.fromkeys(k for o in rows for k, _ in o.entry.extra))
  # `path` is relative to the manifest (ingest resolves it so), so output_dir can move.
  return manifest_format.write(
      os.path.join(output_dir, "manifest.csv"),
      [{"video_id": o.entry.video_id, "subject_id": o.entry.subject_id,
        "path": os.path.basename(o.output), "video_path": o.entry.video_path, **dict(o.entry.extra)}
       for o in rows], MANIFEST_COLUMNS + tuple(extra_columns))


def write_failures(output_dir, outcomes):
  """Writes `failures.csv`: this run's failed videos and why (only the header when none)."""
  return _write_csv(os.path.join(output_dir, FAILURES_FILE), ("video_id", "video_path", "error"),
                    [[o.entry.video_id, o.entry.video_path, o.error] for o in outcomes
                     if o.status == "failed"])


@contextlib.contextmanager
def _local_copy(path):
  """`path` itself, or for a gs:// video a local copy (OpenCV reads local files only)."""
  if not filesystem.is_remote(path):
    yield path
    return
  fd, local = tempfile.mkstemp(suffix=os.path.splitext(path)[1])
  try:
    with os.fdopen(fd, "wb") as f, filesystem.open(path, "rb") as source:
      shutil.copyfileobj(source, f)
    yield local
  finally:
    os.unlink(local)


def extract_one(entry, out, model_path, options, label):
  """Extracts and writes one video; returns its Outcome (failures are caught and described)."""
  outcome = Outcome(entry, "failed", output=str(out))
  if filesystem.exists(str(out)) and not options.overwrite:
    outcome.status = "skipped"
    logging.info("%s %s exists; skipped (--overwrite to redo)", label, out)
    return outcome
  start = time.monotonic()
  local = entry.video_path
  try:
    with _local_copy(entry.video_path) as local:
      arrays = extract_video(local, model_path, options_for(entry, options), label)
  except VideoError as e:
    outcome.error = str(e).replace(local, entry.video_path)
  except Exception as e:  # pylint: disable=broad-except
    # One bad video (a decoder or MediaPipe error) must not stop a long batch.
    outcome.error = f"{entry.video_path}: {type(e).__name__}: {e}"
  if outcome.error:
    outcome.error = " ".join(outcome.error.split())  # One line, whatever the library said.
    logging.error("%s FAILED: %s", label, outcome.error)
    return outcome
  outcome.seconds = time.monotonic() - start
  outcome.frames = int(arrays["valid"].size)
  outcome.valid_frames = int(arrays["valid"].sum())
  outcome.jitter = float(arrays["jitter"])
  video_files.write_npz(str(out), **arrays)
  outcome.status = "extracted"
  logging.info("%s %d frames, %d with a face (%.0f%%), jitter %.4f, %.1f frames/s, %.1f s -> %s",
               label, outcome.frames, outcome.valid_frames,
               100.0 * outcome.valid_frames / outcome.frames, outcome.jitter,
               outcome.frames / max(outcome.seconds, 1e-9), outcome.seconds, out)
  return outcome


def _direct_options(num_processes):
  """Beam's DirectRunner on `num_processes` threads (0: one per core; 1: in this process).

  Threads share the work: MediaPipe's C calls and OpenCV's decoding release the GIL.
  """
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  workers = num_processes if num_processes > 0 else (os.cpu_count() or 1)
  return pipeline_options.PipelineOptions(
      runner="DirectRunner", direct_num_workers=workers,
      direct_running_mode="in_memory" if workers == 1 else "multi_threading")


def _local_workers(pipeline_options):
  """Workers of a multi-worker DirectRunner (which splits work statically), else 0."""
  o = pipeline_options.get_all_options()
  if (o.get("runner") or "DirectRunner") not in ("DirectRunner", "direct"):
    return 0
  workers = o.get("direct_num_workers")
  workers = 1 if workers is None else workers
  return workers if workers > 0 else (os.cpu_count() or 1)


def _declared_frames(entry):
  """The frame count a local video's container declares (1 for remote or unreadable ones)."""
  if filesystem.is_remote(entry.video_path):
    return 1
  try:
    capture, _, declared = _open_video(entry.video_path)
  except VideoError:
    return 1
  capture.release()
  return max(declared, 1)


def extract_all(entries, output_dir, model_asset=None, options=Options(), num_processes=0,
                pipeline_options=None):
  """Extracts every video into `output_dir` with the Beam pipeline, going on past failures.

  Returns the outcomes in `entries` order; writes `manifest.csv` and `failures.csv`. Without
  `pipeline_options` it runs on Beam's DirectRunner with `num_processes` workers (0: one per
  core). One worker keeps about one core busy (FaceLandmarker runs a frame at a time).
  """
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from dfe_jax.video import extract_pipeline  # pylint: disable=g-import-not-at-top
  for entry in entries:
    options_for(entry, options)  # A face mode that cannot work fails before any video.
  model_path = landmarker_asset.resolve(model_asset)
  # Import up front: a missing install fails before any work, and the import (mediapipe pulls
  # in TensorFlow when it is installed) is not charged to the first video's frames/s.
  import_mediapipe()
  output_dir = str(output_dir)
  filesystem.makedirs(output_dir)
  logging.info("model %s; %d videos -> %s", model_path, len(entries), output_dir)
  result_file = os.path.join(output_dir, f".extract-{uuid.uuid4().hex[:8]}.json")
  start = time.monotonic()
  pipeline_options = pipeline_options or _direct_options(num_processes)
  # The DirectRunner hands each worker a fixed share of the work: balance the shares by frames.
  workers = _local_workers(pipeline_options)
  groups = (extract_pipeline.balanced_groups([_declared_frames(e) for e in entries], workers)
            if workers > 1 else list(range(len(entries))))
  try:
    with beam.Pipeline(options=pipeline_options) as p:
      extract_pipeline.build(p, entries, output_dir,
                             None if model_asset is None else str(model_asset), options,
                             result_file, groups)
    with filesystem.open(result_file) as f:
      outcomes = [Outcome.from_json(d) for d in json.load(f)]
  finally:
    if filesystem.exists(result_file):
      filesystem.remove(result_file)
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
               os.path.join(output_dir, "manifest.csv"))
  for o in failed:
    logging.error("failed: %s", o.error)
  if failed:
    logging.error("%d failed video(s) listed in %s", len(failed),
                  os.path.join(output_dir, FAILURES_FILE))
