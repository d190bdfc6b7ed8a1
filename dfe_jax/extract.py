"""Extracts per-frame ARKit blendshapes (+ AU estimates) from face videos into .npz files.

  python -m dfe_jax.extract --videos='clips/*.mp4' --output_dir=/tmp/dfe_features
  python -m dfe_jax.ingest --manifest=/tmp/dfe_features/manifest.csv ...

Needs `pip install -e '.[video]'` and `face_landmarker.task` (see dfe_jax/video/landmarker_asset.py).
Runs as a Beam pipeline on this machine's cores, or on a cluster with `--beam_pipeline_options`
(launch/dataflow_extract.sh). Exits non-zero when any video failed; the others are still
written, and `failures.csv` beside the manifest lists the failures and why.
"""

import logging as std_logging
import sys

from absl import app
from absl import flags

from dfe_jax import startup
from dfe_jax.video import face_tracking
from dfe_jax.video import landmarker_asset

_VIDEOS = flags.DEFINE_string(
    "videos", None, "Comma-separated video paths or globs (`**` recurses), or a .csv manifest "
    "with `video_path` (or `path`) and optional `video_id`, `subject_id` and label columns.",
    required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Directory for <video_id>.npz files and manifest.csv.", required=True)
_MODEL_ASSET = flags.DEFINE_string(
    "model_asset", None, f"face_landmarker.task; default ${landmarker_asset.ENV_VAR}, then the "
    f"installed `{landmarker_asset.PACKAGE}` package.")
_LANDMARKS = flags.DEFINE_bool("landmarks", False, "Also save landmarks float32 [T, 478, 3].")
_HEAD_ROTATION = flags.DEFINE_bool(
    "head_rotation", False, "Append head_pitch, head_yaw, head_roll (radians) to the features "
    "(the feature set becomes `custom`).")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 0, "Stop each video after this many frames "
                                   "(0 = all).", lower_bound=0)
_MAX_FACES = flags.DEFINE_integer(
    "max_faces", 1, "1: follow one face with MediaPipe's own tracking (the steadiest features). "
    "N > 1: detect up to N faces on every frame and keep the one --follow names; the face "
    "detector then re-runs every frame, so the features are about twice as jittery.",
    lower_bound=1)
_FOLLOW = flags.DEFINE_enum(
    "follow", "largest", list(face_tracking.FOLLOW), "With --max_faces > 1, the face kept: "
    "the largest (then followed), or the one centred in the left or right half of the frame "
    "(one seat of an interview). A `follow` column in a --videos manifest sets it per video.")
_MIN_DETECTION = flags.DEFINE_float("min_face_detection_confidence", 0.5,
                                    "FaceLandmarker detection threshold.")
_MIN_PRESENCE = flags.DEFINE_float("min_face_presence_confidence", 0.5,
                                   "FaceLandmarker face presence threshold.")
_MIN_TRACKING = flags.DEFINE_float("min_tracking_confidence", 0.5,
                                   "FaceLandmarker tracking threshold.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo videos whose .npz exists.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", 0, "Videos extracted at once (Beam DirectRunner workers; each keeps about "
    "one core busy): 0 = one per core, 1 = in this process.", lower_bound=0)
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_pipeline_options", "", "Beam pipeline options, as Beam's flags "
    "(\"--runner=DataflowRunner --project=P ...\") or TFDS's comma form "
    "(\"runner=DataflowRunner,project=P\"); they win over --num_processes.")


class _QuietBeamImport(std_logging.Filter):
  """Drops the warning Beam logs at import on machines without Google's BigQuery client."""

  def filter(self, record):
    return "apitools not found" not in record.getMessage()


def main(argv):
  """Parses flags, extracts every video, exits 1 if any failed."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  std_logging.getLogger().addFilter(_QuietBeamImport())
  std_logging.getLogger("apache_beam").setLevel(std_logging.ERROR)
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.data import beam_options  # pylint: disable=g-import-not-at-top
  from dfe_jax.video import extract_lib  # pylint: disable=g-import-not-at-top
  options = extract_lib.Options(
      landmarks=_LANDMARKS.value, head_rotation=_HEAD_ROTATION.value,
      max_frames=_MAX_FRAMES.value, max_faces=_MAX_FACES.value, follow=_FOLLOW.value,
      min_face_detection_confidence=_MIN_DETECTION.value,
      min_face_presence_confidence=_MIN_PRESENCE.value,
      min_tracking_confidence=_MIN_TRACKING.value, overwrite=_OVERWRITE.value)
  try:
    entries = extract_lib.read_entries(_VIDEOS.value)
    outcomes = extract_lib.extract_all(
        entries, _OUTPUT_DIR.value, _MODEL_ASSET.value, options,
        pipeline_options=beam_options.pipeline_options(
            beam_options.parse(_BEAM_OPTIONS.value), _NUM_PROCESSES.value))
  except (ValueError, ImportError, OSError) as e:
    startup.fail("extract", e)
  if any(o.status == "failed" for o in outcomes):
    sys.exit(1)


def run():
  """Console-script entry point (`dfe-extract`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
