"""The real-data path end to end: face clips -> blendshapes -> shards -> model -> tokens -> report.

Runs the README's "From face videos to tokens" chain through the library functions on the
three shortest test clips (single_face, no_face, carphone_pristine; at most 96 frames each)
with `configs/blendshape.py:smoke`. The clips and face_landmarker.task come from
`bash .ci/fetch_test_media.sh` into ${DFE_TEST_MEDIA:-~/.cache/dfe_jax/test_media}; the test
skips with that hint without them or without mediapipe. Measured here with other jobs loading
the 2 cores (load average 4-7): 22 s with conftest's XLA cache warm, 73-88 s cold, of which
about 46 s is XLA compiling (train_step alone 15 s); a quiet machine roughly halves the cold time.
"""

import csv
import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

from dfe_jax.data import ingest_lib
from dfe_jax.formats import tokens as tokens_format
from dfe_jax.reporting import report_lib
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import device_mesh
from dfe_jax.training import train_lib
from dfe_jax.video import extract_lib

MEDIA = pathlib.Path(os.environ.get("DFE_TEST_MEDIA",
                                    pathlib.Path.home() / ".cache/dfe_jax/test_media"))
MODEL = MEDIA / "face_landmarker.task"
CONFIG = pathlib.Path(__file__).resolve().parent.parent / "configs" / "blendshape.py"
MAX_FRAMES = 96
# video_id -> (subject_id, split). carphone trains; no_face (no face in any frame) also trains,
# so fully masked windows go through the pipeline; single_face is the held-out subject.
CLIPS = {
    "carphone_pristine": ("carphone_man", "train", "carphone_pristine.mp4"),
    "no_face": ("no_face", "train", "no_face.mp4"),
    "single_face": ("pyfeat_man", "val", "single_face.mp4"),
}


def _missing_requirements():
  """Why the test cannot run here, or '' when it can."""
  missing = [name for *_, name in CLIPS.values() if not (MEDIA / name).is_file()]
  if not MODEL.is_file():
    missing.append(MODEL.name)
  if missing:
    return (f"test media missing in {MEDIA} ({', '.join(missing)}): run "
            "`bash .ci/fetch_test_media.sh`")
  try:
    import cv2  # pylint: disable=g-import-not-at-top,unused-import
    import mediapipe  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return "mediapipe/opencv not installed: `pip install -e '.[video]'`"
  return ""


_WHY = _missing_requirements()


def _smoke_config(data_dir):
  """configs/blendshape.py:smoke, loaded by path as `--config=configs/blendshape.py:smoke` does."""
  spec = importlib.util.spec_from_file_location("dfe_configs_blendshape_test", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.data_dir = str(data_dir)
  return config


@pytest.mark.skipif(bool(_WHY), reason=_WHY or "runs")
def test_clips_to_tokens_and_report(tmp_path):
  # Extract, from an input manifest: its split column must reach ingest through extract.
  clips_csv = tmp_path / "clips.csv"
  with open(clips_csv, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["video_id", "subject_id", "video_path", "split"])
    for video_id, (subject, split, name) in CLIPS.items():
      writer.writerow([video_id, subject, str(MEDIA / name), split])
  features_dir = tmp_path / "clips"
  outcomes = extract_lib.extract_all(extract_lib.read_entries(str(clips_csv)), features_dir,
                                     MODEL, extract_lib.Options(max_frames=MAX_FRAMES))
  assert {o.entry.video_id: o.status for o in outcomes} == {v: "extracted" for v in CLIPS}
  frames = {o.entry.video_id: o.frames for o in outcomes}
  valid = {o.entry.video_id: o.valid_frames for o in outcomes}
  assert all(0 < n <= MAX_FRAMES for n in frames.values()), frames
  assert valid["no_face"] == 0
  assert valid["single_face"] >= 0.9 * frames["single_face"]
  assert valid["carphone_pristine"] >= 0.9 * frames["carphone_pristine"]

  # Ingest at one rate (the clips are 23.7-30 fps), splits from the manifest.
  shards = tmp_path / "shards"
  info = ingest_lib.ingest(str(features_dir / "manifest.csv"), str(shards),
                           ingest_lib.IngestOptions(num_shards=1, fps=25.0,
                                                    normalize="subject", num_processes=1))
  assert info["feature_space"] == "arkit51" and info["num_features"] == 51
  assert info["splits"]["train"]["num_videos"] == 2
  assert info["splits"]["val"]["num_videos"] == 1

  # Train the smoke model on one device, as the path runs on a CPU machine (test_train covers
  # 8 devices); eval runs on the held-out subject.
  workdir = tmp_path / "train"
  config = _smoke_config(shards)
  metrics = train_lib.train_and_evaluate(config, str(workdir), mesh=device_mesh.make_mesh(1))
  assert np.isfinite(metrics["eval/recon_mse"]) and metrics["eval/frames"] > 0

  # Tokenize every extracted video from the manifest (not the shards: a user's path).
  trained = trained_model.load(str(workdir))
  tokens_dir = tmp_path / "tokens"
  summary = tokenize_lib.tokenize_videos(trained, str(features_dir / "manifest.csv"),
                                         str(tokens_dir))
  assert summary["num_videos"] == len(CLIPS)
  tokens = tokens_format.read(str(tokens_dir))
  assert sorted(map(str, tokens["video_id"])) == sorted(CLIPS)
  q = config.model.quantizer
  assert tokens["codes"].shape[1] == q.num_levels
  codes, ok = tokens["codes"], tokens["valid"]
  assert ok.any()
  assert codes[ok].min() >= 0 and codes[ok].max() < q.codebook_size
  assert np.all(codes[~ok] == -1)  # Face-lost steps carry no token.
  factor = 2 ** config.model.downsample_log2
  fps = {v: float(np.load(features_dir / f"{v}.npz")["fps"]) for v in CLIPS}
  for i, video_id in enumerate(map(str, tokens["video_id"])):
    rows = slice(tokens["offset"][i], tokens["offset"][i + 1])
    resampled = int(round(frames[video_id] * 25.0 / fps[video_id]))
    # One latent step per `factor` frames at 25 fps (rounding of the resampler aside).
    assert abs(rows.stop - rows.start - resampled / factor) <= 1, video_id
    if video_id == "no_face":
      assert not ok[rows].any()
    else:
      assert ok[rows].mean() > 0.8, video_id

  # Report: blendshape tokens are drawn as deformed ICT faces.
  report = report_lib.write_report(
      str(workdir), str(tmp_path / "report"), tokens=str(tokens_dir),
      manifest=str(features_dir / "manifest.csv"), top_tokens=8, heldout_videos=1,
      composition_frames=1)
  html = pathlib.Path(report).read_text()
  assert "token_faces.png" in html and "No faces:" not in html
  assert "blendshape jitter" in html  # Tracking noise beside the token statistics.
  assert (tmp_path / "report" / "token_faces.png").stat().st_size > 10_000
  run_config = json.loads((workdir / "config.json").read_text())["config"]
  assert run_config["model"]["feature_dim"] == 51
