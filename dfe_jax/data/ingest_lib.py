"""Ingest: manifest + per-video files -> balanced TFRecord shards + `dataset.json`.

`ingest` runs the Apache Beam pipeline of `ingest_pipeline` (on this machine's cores by
default; Dataflow, Flink or Spark through Beam's options): every video is read, validated,
resampled to one frame rate and cut into records of at most `chunk_frames` frames, which go to
staged shard files by a deterministic rule. Only when every video has passed are the shards
moved into place; `dataset.json` is written last, so a folder without it was never finished.
Beside it: `videos.csv`, and TFDS's `dataset_info.json` and `features.json` (`tfds_metadata`).
"""

import collections
import dataclasses
import json
import os
import time
import uuid

from absl import logging
import numpy as np

from dfe_jax.data import moments
from dfe_jax.data import tfds_metadata
from dfe_jax.data import tfrecords
from dfe_jax.formats import dataset_info
from dfe_jax.formats import feature_spaces
from dfe_jax.formats import filesystem
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import provenance
from dfe_jax.formats import video_files

FORMAT_VERSION = dataset_info.FORMAT_VERSION
_OUTPUT_FILES = ("dataset.json", dataset_info.VIDEOS_CSV, tfds_metadata.DATASET_INFO,
                 tfds_metadata.FEATURES)


class IngestError(ValueError):
  """Ingest options or output folder that cannot work; the one-line message says which."""


@dataclasses.dataclass(frozen=True)
class IngestOptions:
  """The ingest flags, with their defaults.

  `num_processes`: DirectRunner workers (0: one per core; 1: in this process).
  `beam_options`: Beam's own flags (`--runner=DataflowRunner`, ...); they win over the above.
  """
  num_shards: int = 4
  chunk_frames: int = 4096
  fps: float | None = None
  normalize: str = "global"
  val_fraction: float = 0.1
  test_fraction: float = 0.1
  seed: int = 0
  num_processes: int = 0
  overwrite: bool = False
  beam_options: tuple = ()


def assign_splits(rows, val_fraction, test_fraction, seed):
  """{video_id: split}: the manifest's own splits, or subjects drawn at random into splits.

  Subjects, never videos, are assigned, so no subject lands on two sides (the manifest's
  reader has checked that its own splits keep subjects on one side).
  """
  if any((r.get("split") or "").strip() for r in rows):
    return {r["video_id"]: r["split"].strip() for r in rows}
  if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
    raise IngestError("val_fraction and test_fraction must be in [0, 1) and sum below 1")
  subjects = sorted({r["subject_id"] for r in rows})
  order = np.random.default_rng(seed).permutation(len(subjects))
  num_val = int(round(val_fraction * len(subjects)))
  num_test = int(round(test_fraction * len(subjects)))
  if num_val + num_test >= len(subjects):
    raise IngestError(f"{len(subjects)} subject(s) cannot fill train, val and test; lower "
                     "--val_fraction/--test_fraction")
  split_of = {}
  for rank, i in enumerate(order):
    split_of[subjects[i]] = ("val" if rank < num_val else
                             "test" if rank < num_val + num_test else "train")
  return {r["video_id"]: split_of[r["subject_id"]] for r in rows}


def source_fps(row):
  """`video_files.frame_rate` of a manifest row, reading its file only when the manifest gives
  no rate."""
  given = (row.get("fps") or "").strip()
  file_fps = None if given else video_files.read_video(row["path"]).fps
  return video_files.frame_rate(row["path"], file_fps, given)


def resample(x_TD, valid_T, from_fps, to_fps):
  """Resamples to `to_fps`: linear interpolation for features, nearest frame for `valid`."""
  if from_fps == to_fps or len(x_TD) < 2:
    return x_TD, valid_T
  duration = (len(x_TD) - 1) / from_fps
  t_new = np.arange(int(np.floor(duration * to_fps + 1e-9)) + 1) / to_fps
  t_old = np.arange(len(x_TD)) / from_fps
  x_new = np.stack([np.interp(t_new, t_old, x_TD[:, d]) for d in range(x_TD.shape[1])], 1)
  nearest = np.clip(np.round(t_new * from_fps).astype(int), 0, len(x_TD) - 1)
  # A new frame interpolated from an invalid neighbour is invalid too.
  lower = np.clip(np.floor(t_new * from_fps + 1e-9).astype(int), 0, len(x_TD) - 1)
  upper = np.clip(lower + 1, 0, len(x_TD) - 1)
  valid_new = valid_T[nearest] & valid_T[lower] & valid_T[upper]
  return x_new.astype(np.float32), valid_new


def load_and_resample(row, target_fps):
  """Reads one video, marks non-finite frames invalid and resamples it (runs in a worker)."""
  video = video_files.read_video(row["path"])
  fps = video_files.frame_rate(row["path"], video.fps, row.get("fps"))
  finite = np.isfinite(video.features).all(1)
  num_nonfinite = int((~finite).sum())
  x = np.where(finite[:, None], video.features, 0.0).astype(np.float32)
  valid = video.valid & finite
  x, valid = resample(x, valid, fps, target_fps)
  x[~valid] = 0.0
  return {"features": x, "valid": valid, "source_fps": fps, "feature_names": video.feature_names,
          "num_nonfinite": num_nonfinite}


def make_example(video_id, subject_id, start, x_TD, valid_T, fps):
  """One record of the shard format (docs/formats.md, "Shards"), serialized."""
  return tfrecords.shard_example(video_id, subject_id, start, x_TD, valid_T, fps)


def sha256_of(path):
  """Hex sha256 of a local or gs:// file."""
  return provenance.sha256_of(path, filesystem.open)


def check_output_dir(output_dir, overwrite):
  """Stops on a finished dataset unless `overwrite`; clears the old one when overwriting."""
  if not filesystem.exists(os.path.join(output_dir, "dataset.json")):
    return
  if not overwrite:
    raise IngestError(f"{output_dir}: already holds a dataset; pass --overwrite to replace it")
  for name in filesystem.listdir(output_dir):
    if name.endswith(".tfrecord") or name in _OUTPUT_FILES:
      filesystem.remove(os.path.join(output_dir, name))


def ingest(manifest, output_dir, options):
  """Ingests `manifest` into `output_dir` with the Beam pipeline; returns the dataset.json dict.

  Bad input stops it with one line (`ManifestError`, `VideoFileError`, `IngestError`) naming
  the first bad file in manifest order, and nothing is left in `output_dir`.
  """
  from dfe_jax.data import beam_options  # pylint: disable=g-import-not-at-top
  with beam_options.quiet_beam():
    return _ingest(manifest, output_dir, options)


def _ingest(manifest, output_dir, options):
  # Beam loads in about a second; the many modules that use this one only for its readers
  # (tokenize, report, probe baselines) do not pay for it.
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from dfe_jax.data import beam_options  # pylint: disable=g-import-not-at-top
  from dfe_jax.data import ingest_pipeline  # pylint: disable=g-import-not-at-top
  if options.num_shards < 1 or options.chunk_frames < 1:
    raise IngestError("--num_shards and --chunk_frames must be at least 1")
  check_output_dir(output_dir, options.overwrite)
  rows = manifest_format.read(manifest)
  split_of = assign_splits(rows, options.val_fraction, options.test_fraction, options.seed)
  filesystem.makedirs(output_dir)
  staging = os.path.join(output_dir, f".staging-{uuid.uuid4().hex[:8]}")
  filesystem.makedirs(staging)
  args = list(options.beam_options)
  start = time.time()
  try:
    with beam.Pipeline(options=beam_options.pipeline_options(args, options.num_processes)) as p:
      ingest_pipeline.build(p, rows, split_of, staging, options, load_and_resample, source_fps)
    with filesystem.open(os.path.join(staging, ingest_pipeline.SUMMARY_FILE)) as f:
      summary = json.load(f)
    if summary["error"]:
      raise video_files.VideoFileError(summary["error"])
    info = _dataset_info(summary, rows, manifest, options)
    for entry in summary["shards"]:
      filesystem.rename(os.path.join(staging, entry["path"]),
                        os.path.join(output_dir, entry["path"]), overwrite=True)
    dataset_info.write_videos(output_dir, [dict(v, num_nonfinite_frames=v["num_nonfinite"])
                                           for v in summary["videos"]])
    tfds_metadata.write(output_dir, info)
    dataset_info.write(output_dir, info)
  finally:
    filesystem.rmtree(staging)
  frames = sum(v["num_frames"] for v in summary["videos"])
  seconds = time.time() - start
  workers = (f"{beam_options.direct_workers(args, options.num_processes)} worker(s)"
             if beam_options.is_direct(args) else beam_options.runner_name(args))
  logging.info("ingest: %d videos, %d frames in %.1f s (%.0f frames/s, %s) -> %s",
               len(summary["videos"]), frames, seconds, frames / max(seconds, 1e-9), workers,
               output_dir)
  return info


def _dataset_info(summary, rows, manifest, options):
  """dataset.json from the pipeline's summary (docs/formats.md)."""
  videos = summary["videos"]
  names = videos[0]["feature_names"]
  splits = {split: collections.Counter() for split in manifest_format.SPLITS
            if any(v["split"] == split for v in videos)}
  for v in videos:
    counts = splits[v["split"]]
    counts.update(num_videos=1, num_frames=v["num_frames"],
                  num_valid_frames=v["num_valid_frames"])
  subject_moments = {s: moments_from_json(m) for s, m in summary["subjects"].items()}
  subject_split = {v["subject_id"]: v["split"] for v in videos}
  out_splits = {}
  for split, counts in splits.items():
    shards = [{k: e[k] for k in ("path", "num_records", "num_frames", "record_frames", "sha256")}
              for e in summary["shards"] if e["split"] == split]
    num_subjects = sum(1 for s in subject_split.values() if s == split)
    out_splits[split] = {**counts, "num_subjects": num_subjects, "shards": shards}
  return {
      "format_version": FORMAT_VERSION,
      "feature_space": feature_spaces.space_of(names),
      "feature_names": names,
      "num_features": len(names),
      "fps": summary["fps"],
      "source_fps": dict(collections.Counter(str(v["source_fps"]) for v in videos)),
      "chunk_frames": options.chunk_frames,
      "normalization": moments.normalization_entry(
          options.normalize, moments_from_json(summary["train"]), subject_moments),
      "splits": out_splits,
      "num_nonfinite_frames": sum(v["num_nonfinite"] for v in videos),
      "label_columns": manifest_format.label_columns(rows),
      "manifest": {"path": manifest, "sha256": sha256_of(manifest)},
  }


def moments_from_json(d):
  """Moments from the pipeline summary's JSON (None stays None)."""
  return None if d is None else moments.Moments(float(d["count"]), np.asarray(d["mean"]),
                                                np.asarray(d["m2"]))


def summary_line(info):
  """One line: per-split videos, subjects and frames, and dropped non-finite frames."""
  parts = [f"{s}: {v['num_videos']} videos / {v['num_subjects']} subjects / "
           f"{v['num_frames']} frames ({v['num_frames'] - v['num_valid_frames']} invalid)"
           for s, v in info["splits"].items()]
  return "; ".join(parts) + f"; {info['num_nonfinite_frames']} non-finite frames set invalid"
