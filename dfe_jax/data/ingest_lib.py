"""Ingest: manifest + per-video files -> balanced TFRecord shards + `dataset.json`.

One pass per worker: every video is read, validated, resampled to one frame rate and cut
into records of at most `chunk_frames` frames, which go to the least-filled shard of their
split inside a staging folder. Only when every video has passed are the shards moved into
place; `dataset.json` is written last, so a folder without it was never finished. Workers
(`num_workers > 1`) take disjoint sets of subjects and leave a `worker-*.json` each;
`merge_workers` turns those into `dataset.json` (also what a single worker does at the end).
"""

import collections
import csv
import dataclasses
import io
import json
import os
import time
import uuid

from absl import logging
import numpy as np
import tensorflow as tf

from dfe_jax.data import process_pool
from dfe_jax.formats import feature_spaces
from dfe_jax.formats import filesystem
from dfe_jax.formats import normalization
from dfe_jax.formats import outputs
from dfe_jax.formats import provenance
from dfe_jax.formats import video_files

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_REQUIRED_COLUMNS = ("video_id", "subject_id", "path")
_KNOWN_COLUMNS = _REQUIRED_COLUMNS + ("split", "video_path", "fps")
InputError = video_files.InputError


@dataclasses.dataclass(frozen=True)
class IngestOptions:
  """The ingest flags, with their defaults."""
  num_shards: int = 4
  chunk_frames: int = 4096
  fps: float | None = None
  normalize: str = "global"
  val_fraction: float = 0.1
  test_fraction: float = 0.1
  seed: int = 0
  num_workers: int = 1
  worker_index: int = 0
  num_processes: int = 2
  overwrite: bool = False


def read_manifest(path):
  """Reads and checks a manifest; returns rows with `path` resolved against its folder."""
  if not filesystem.exists(path):
    raise InputError(f"{path}: manifest not found")
  with filesystem.open(path, "r") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise InputError(f"{path}: manifest has no rows")
  missing = [c for c in _REQUIRED_COLUMNS if c not in rows[0]]
  if missing:
    raise InputError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
  base = os.path.dirname(path)
  seen = {}
  for line, row in enumerate(rows, start=2):
    for column in _REQUIRED_COLUMNS:
      if not (row[column] or "").strip():
        raise InputError(f"{path}:{line}: empty {column}")
    vid = row["video_id"]
    if vid in seen:
      raise InputError(f"{path}:{line}: duplicate video_id {vid!r} (first on line {seen[vid]})")
    seen[vid] = line
    split = (row.get("split") or "").strip()
    if split and split not in SPLITS:
      raise InputError(f"{path}:{line}: split {split!r} is not one of {', '.join(SPLITS)}")
    if "://" not in row["path"] and not os.path.isabs(row["path"]):
      row["path"] = os.path.join(base, row["path"])
    if not filesystem.exists(row["path"]):
      raise InputError(f"{path}:{line}: video {vid!r} points at a missing file {row['path']}")
  return rows


def label_columns(rows):
  """The manifest's label columns: everything not in the data contract's own columns."""
  return [c for c in rows[0] if c not in _KNOWN_COLUMNS]


def assign_splits(rows, val_fraction, test_fraction, seed):
  """{video_id: split}: the manifest's own splits, or subjects drawn at random into splits.

  Subjects, never videos, are assigned, so no subject lands on two sides.
  """
  if any((r.get("split") or "").strip() for r in rows):
    by_subject = collections.defaultdict(set)
    for r in rows:
      if not (r.get("split") or "").strip():
        raise InputError(f"video {r['video_id']!r}: the manifest gives splits for some "
                         "videos but not this one")
      by_subject[r["subject_id"]].add(r["split"])
    mixed = {s: sp for s, sp in by_subject.items() if len(sp) > 1}
    if mixed:
      s, sp = next(iter(mixed.items()))
      raise InputError(f"subject {s!r} appears in splits {sorted(sp)}: a subject must stay "
                       "on one side")
    return {r["video_id"]: r["split"] for r in rows}
  if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
    raise InputError("val_fraction and test_fraction must be in [0, 1) and sum below 1")
  subjects = sorted({r["subject_id"] for r in rows})
  order = np.random.default_rng(seed).permutation(len(subjects))
  num_val = int(round(val_fraction * len(subjects)))
  num_test = int(round(test_fraction * len(subjects)))
  if num_val + num_test >= len(subjects):
    raise InputError(f"{len(subjects)} subject(s) cannot fill train, val and test; lower "
                     "--val_fraction/--test_fraction")
  split_of = {}
  for rank, i in enumerate(order):
    split_of[subjects[i]] = ("val" if rank < num_val else
                             "test" if rank < num_val + num_test else "train")
  return {r["video_id"]: split_of[r["subject_id"]] for r in rows}


def source_fps(row):
  """A video's frame rate: the manifest's `fps` column, else the `fps` stored in its `.npz`."""
  if (row.get("fps") or "").strip():
    return float(row["fps"])
  if row["path"].endswith(".npz"):
    try:
      data = outputs.load_npz(row["path"])
    except outputs.UnreadableFileError as e:
      raise InputError(str(e)) from None
    if "fps" in data:
      return float(data["fps"])
  raise InputError(f"{row['path']}: no frame rate; add an 'fps' column to the manifest")


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
  fps = video.fps or source_fps(row)
  finite = np.isfinite(video.features).all(1)
  num_nonfinite = int((~finite).sum())
  x = np.where(finite[:, None], video.features, 0.0).astype(np.float32)
  valid = video.valid & finite
  x, valid = resample(x, valid, fps, target_fps)
  x[~valid] = 0.0
  return {"features": x, "valid": valid, "source_fps": fps, "feature_names": video.feature_names,
          "num_nonfinite": num_nonfinite}


def make_example(video_id, subject_id, start, x_TD, valid_T, fps):
  """One record of the shard format (DESIGN.md, "Shards")."""
  feature = {
      "video_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id.encode()])),
      "subject_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[subject_id.encode()])),
      "start_frame": tf.train.Feature(int64_list=tf.train.Int64List(value=[start])),
      "num_frames": tf.train.Feature(int64_list=tf.train.Int64List(value=[len(x_TD)])),
      "fps": tf.train.Feature(float_list=tf.train.FloatList(value=[fps])),
      # Row-major float32 [T, D] and uint8 [T] as raw little-endian bytes: parsing is one copy.
      "features": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[np.ascontiguousarray(x_TD, "<f4").tobytes()])),
      "valid": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[valid_T.astype(np.uint8).tobytes()])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def shard_name(split, worker, num_workers, index, num_shards):
  """Shard file name; the split comes first so globs like `train-*` find a split's files."""
  prefix = f"{split}-w{worker:03d}of{num_workers:03d}" if num_workers > 1 else split
  return f"{prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"


def sha256_of(path):
  """Hex sha256 of a local or gs:// file."""
  return provenance.sha256_of(path, filesystem.open)


def _worker_rows(rows, num_workers, worker_index):
  """This worker's rows: all videos of every `num_workers`-th subject in sorted order."""
  subjects = sorted({r["subject_id"] for r in rows})
  mine = set(subjects[worker_index::num_workers])
  return [r for r in rows if r["subject_id"] in mine]


def _pick_fps(rows, options, pool):
  if options.fps:
    return float(options.fps)
  if options.num_workers > 1:
    raise InputError("--fps is required with --num_workers > 1 (all workers must agree)")
  rates = collections.Counter(pool.map(source_fps, rows))
  return rates.most_common(1)[0][0]


def ingest_worker(manifest, output_dir, options):
  """Writes this worker's shards and `worker-*.json`; returns that summary's path."""
  rows = read_manifest(manifest)
  split_of = assign_splits(rows, options.val_fraction, options.test_fraction, options.seed)
  mine = _worker_rows(rows, options.num_workers, options.worker_index)
  filesystem.makedirs(output_dir)
  staging = os.path.join(output_dir, f".staging-{uuid.uuid4().hex[:8]}")
  filesystem.makedirs(staging)
  try:
    with process_pool.process_pool(options.num_processes) as pool:
      fps = _pick_fps(rows, options, pool)
      summary = _write_records(mine, split_of, fps, staging, options, pool)
    summary.update(manifest=manifest, manifest_sha256=sha256_of(manifest), fps=fps,
                   num_workers=options.num_workers, worker_index=options.worker_index,
                   label_columns=label_columns(rows), chunk_frames=options.chunk_frames)
    for split_info in summary["splits"].values():
      for shard in split_info["shards"]:
        filesystem.rename(os.path.join(staging, shard["path"]), os.path.join(output_dir, shard["path"]),
                     overwrite=True)
    path = os.path.join(output_dir, f"worker-{options.worker_index:03d}-of-"
                        f"{options.num_workers:03d}.json")
    with filesystem.open(path, "w") as f:
      json.dump(summary, f)
    return path
  finally:
    filesystem.rmtree(staging)


def _write_records(rows, split_of, fps, staging, options, pool):
  """Reads, checks and writes every row's records into balanced staging shards."""
  writers, shard_frames, shard_records, shard_record_frames = {}, {}, {}, {}
  splits = {}
  names, moments, moments_train = None, {}, {}
  videos_index = []
  start, frames_done = time.time(), 0
  nonfinite = 0
  jobs = pool.map(load_and_resample, rows, [fps] * len(rows))
  for i, (row, video) in enumerate(zip(rows, jobs), 1):
    vid, subject, split = row["video_id"], row["subject_id"], split_of[row["video_id"]]
    if names is None:
      names = video["feature_names"]
    elif video["feature_names"] != names:
      raise InputError(f"{row['path']}: feature names differ from the first video's "
                       f"({len(video['feature_names'])} vs {len(names)} features: "
                       f"{_first_difference(video['feature_names'], names)})")
    x, valid = video["features"], video["valid"]
    if not valid.any():
      logging.warning("ingest: %s has no valid frames", row["path"])
    m = normalization.Moments.of(x[valid])
    moments[subject] = moments.get(subject, normalization.Moments.zeros(x.shape[1])) + m
    if split == "train":
      moments_train[subject] = moments_train.get(subject, normalization.Moments.zeros(
          x.shape[1])) + m
    nonfinite += video["num_nonfinite"]
    if split not in writers:
      writers[split] = [None] * options.num_shards
      shard_frames[split] = [0] * options.num_shards
      shard_records[split] = [0] * options.num_shards
      shard_record_frames[split] = [[] for _ in range(options.num_shards)]
      splits[split] = collections.Counter()
    for begin in range(0, len(x), options.chunk_frames):
      chunk = slice(begin, begin + options.chunk_frames)
      s = int(np.argmin(shard_frames[split]))
      if writers[split][s] is None:
        writers[split][s] = tf.io.TFRecordWriter(os.path.join(staging, shard_name(
            split, options.worker_index, options.num_workers, s, options.num_shards)))
      writers[split][s].write(make_example(vid, subject, begin, x[chunk], valid[chunk], fps))
      n = len(x[chunk])
      shard_frames[split][s] += n
      shard_records[split][s] += 1
      shard_record_frames[split][s].append(n)
    splits[split].update(num_videos=1, num_frames=len(x), num_valid_frames=int(valid.sum()))
    videos_index.append({"video_id": vid, "subject_id": subject, "split": split,
                         "source_fps": video["source_fps"], "num_frames": len(x),
                         "num_valid_frames": int(valid.sum()),
                         "num_nonfinite_frames": video["num_nonfinite"]})
    frames_done += len(x)
    if i % 50 == 0 or i == len(rows):
      elapsed = max(time.time() - start, 1e-9)
      logging.info("ingest: %d/%d videos, %d frames, %.0f frames/s, ETA %.0f s", i, len(rows),
                   frames_done, frames_done / elapsed, elapsed * (len(rows) - i) / i)
  for split_writers in writers.values():
    for w in split_writers:
      if w is not None:
        w.close()
  out_splits = {}
  for split, counts in splits.items():
    shards = []
    for s in range(options.num_shards):
      if writers[split][s] is None:
        continue
      name = shard_name(split, options.worker_index, options.num_workers, s, options.num_shards)
      shards.append({"path": name, "num_records": shard_records[split][s],
                     "num_frames": shard_frames[split][s],
                     "record_frames": shard_record_frames[split][s],
                     "sha256": sha256_of(os.path.join(staging, name))})
    subjects = {v["subject_id"] for v in videos_index if v["split"] == split}
    out_splits[split] = {**counts, "num_subjects": len(subjects), "shards": shards}
  return {"feature_names": list(names or ()), "splits": out_splits, "videos": videos_index,
          "num_nonfinite_frames": nonfinite,
          "moments": {s: m.to_json() for s, m in moments.items()},
          "moments_train": {s: m.to_json() for s, m in moments_train.items()}}


def _first_difference(a, b):
  for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
      return f"column {i} is {x!r}, expected {y!r}"
  return "different lengths"


def merge_workers(output_dir, normalize, num_workers):
  """Merges the `worker-*.json` summaries into `dataset.json` (written last, atomically)."""
  summaries = []
  for w in range(num_workers):
    path = os.path.join(output_dir, f"worker-{w:03d}-of-{num_workers:03d}.json")
    if not filesystem.exists(path):
      raise InputError(f"{path}: missing; worker {w} has not finished")
    with filesystem.open(path) as f:
      summaries.append(json.load(f))
  names = summaries[0]["feature_names"]
  for s in summaries[1:]:
    if s["feature_names"] != names and s["feature_names"]:
      raise InputError(f"worker {s['worker_index']}: feature names differ from worker 0's")
  moments, moments_train = {}, {}
  for s in summaries:
    moments.update({k: normalization.Moments.from_json(v) for k, v in s["moments"].items()})
    moments_train.update({k: normalization.Moments.from_json(v)
                          for k, v in s["moments_train"].items()})
  splits = {}
  for split in SPLITS:
    parts = [s["splits"][split] for s in summaries if split in s["splits"]]
    if not parts:
      continue
    totals = collections.Counter()
    for p in parts:
      totals.update({k: v for k, v in p.items() if k != "shards"})
    splits[split] = {**totals, "shards": [sh for p in parts for sh in p["shards"]]}
  videos = [v for s in summaries for v in s["videos"]]
  info = {
      "format_version": FORMAT_VERSION,
      "feature_space": feature_spaces.space_of(names),
      "feature_names": names,
      "num_features": len(names),
      "fps": summaries[0]["fps"],
      "source_fps": dict(collections.Counter(str(v["source_fps"]) for v in videos)),
      "chunk_frames": summaries[0]["chunk_frames"],
      "normalization": normalization.finalize(normalize, moments_train, moments),
      "splits": splits,
      "num_nonfinite_frames": sum(s["num_nonfinite_frames"] for s in summaries),
      "label_columns": summaries[0]["label_columns"],
      "manifest": {"path": summaries[0]["manifest"],
                   "sha256": summaries[0]["manifest_sha256"]},
  }
  _write_videos_csv(os.path.join(output_dir, "videos.csv"), videos)
  tmp = os.path.join(output_dir, f"dataset.json.tmp-{uuid.uuid4().hex[:8]}")
  with filesystem.open(tmp, "w") as f:
    json.dump(info, f, indent=1)
  filesystem.rename(tmp, os.path.join(output_dir, "dataset.json"), overwrite=True)
  for w in range(num_workers):
    filesystem.remove(os.path.join(output_dir, f"worker-{w:03d}-of-{num_workers:03d}.json"))
  return info


def _write_videos_csv(path, videos):
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(videos[0]))
  writer.writeheader()
  writer.writerows(videos)
  with filesystem.open(path, "w") as f:
    f.write(buffer.getvalue())


def read_video_splits(data_dir):
  """{video_id: split} from an ingest folder's `videos.csv`."""
  path = os.path.join(data_dir, "videos.csv")
  if not filesystem.exists(path):
    raise FileNotFoundError(f"{path}: no videos.csv; is {data_dir} an ingest output folder?")
  with filesystem.open(path) as f:
    return {r["video_id"]: r["split"] for r in csv.DictReader(f)}


def check_output_dir(output_dir, overwrite, num_workers):
  """Stops on a finished dataset unless `overwrite`; clears old shards when overwriting."""
  if not filesystem.exists(os.path.join(output_dir, "dataset.json")):
    return
  if not overwrite:
    raise InputError(f"{output_dir}: already holds a dataset; pass --overwrite to replace it")
  if num_workers == 1:
    for name in filesystem.listdir(output_dir):
      if name.endswith(".tfrecord") or name in ("dataset.json", "videos.csv"):
        filesystem.remove(os.path.join(output_dir, name))


def ingest(manifest, output_dir, options):
  """Single-machine ingest: one worker, then the merge. Returns the dataset.json dict."""
  check_output_dir(output_dir, options.overwrite, 1)
  ingest_worker(manifest, output_dir, dataclasses.replace(options, num_workers=1, worker_index=0))
  return merge_workers(output_dir, options.normalize, 1)


def summary_line(info):
  """One line: per-split videos, subjects and frames, and dropped non-finite frames."""
  parts = [f"{s}: {v['num_videos']} videos / {v['num_subjects']} subjects / "
           f"{v['num_frames']} frames ({v['num_frames'] - v['num_valid_frames']} invalid)"
           for s, v in info["splits"].items()]
  return "; ".join(parts) + f"; {info['num_nonfinite_frames']} non-finite frames set invalid"
