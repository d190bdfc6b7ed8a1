"""Ingest: exact round trip, subject-disjoint splits, train-only statistics, clear errors."""

import csv
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from dfe_jax.data import ingest_lib
from dfe_jax.data import input_pipeline
from dfe_jax.formats import outputs

OPTIONS = ingest_lib.IngestOptions(num_shards=2, chunk_frames=128, num_processes=1)


def _rows(manifest):
  with open(manifest) as f:
    return list(csv.DictReader(f))


def _read_back(shard_dir):
  """{video_id: (features, valid, subject)} reassembled from every shard's records."""
  info = input_pipeline.load_info(shard_dir)
  chunks = {}
  for split in info["splits"].values():
    for shard in split["shards"]:
      for raw in tf.data.TFRecordDataset(os.path.join(shard_dir, shard["path"])):
        ex = tf.train.Example.FromString(raw.numpy()).features.feature
        n = ex["num_frames"].int64_list.value[0]
        x = np.frombuffer(ex["features"].bytes_list.value[0], "<f4").reshape(n, -1)
        valid = np.frombuffer(ex["valid"].bytes_list.value[0], np.uint8).astype(bool)
        vid = ex["video_id"].bytes_list.value[0].decode()
        chunks.setdefault(vid, []).append((ex["start_frame"].int64_list.value[0], x, valid,
                                           ex["subject_id"].bytes_list.value[0].decode()))
  out = {}
  for vid, parts in chunks.items():
    parts.sort(key=lambda p: p[0])
    assert [p[0] for p in parts] == list(range(0, 128 * len(parts), 128))
    out[vid] = (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
                parts[0][3])
  return out


def _write_manifest(path, rows):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return str(path)


def _copy_corpus(small_corpus, tmp_path):
  """A manifest with absolute paths to the small corpus, editable per test."""
  rows = _rows(small_corpus)
  for r in rows:
    r["path"] = os.path.join(os.path.dirname(small_corpus), r["path"])
  return rows


def test_round_trip_reads_back_exactly_what_went_in(small_corpus, small_shards):
  back = _read_back(small_shards)
  rows = _rows(small_corpus)
  assert set(back) == {r["video_id"] for r in rows}
  for r in rows:
    v = outputs.load_npz(os.path.join(os.path.dirname(small_corpus), r["path"]))
    x, valid, subject = back[r["video_id"]]
    np.testing.assert_array_equal(valid, v["valid"])
    np.testing.assert_array_equal(x, v["features"])
    assert subject == r["subject_id"]


def test_splits_are_subject_disjoint_and_cover_every_video(small_corpus, small_shards):
  videos = list(csv.DictReader(open(os.path.join(small_shards, "videos.csv"))))
  assert {v["video_id"] for v in videos} == {r["video_id"] for r in _rows(small_corpus)}
  split_of_subject = {}
  for v in videos:
    assert split_of_subject.setdefault(v["subject_id"], v["split"]) == v["split"]
  assert set(split_of_subject.values()) == {"train", "val", "test"}


def test_statistics_come_from_the_training_split_only(small_corpus, small_shards):
  info = input_pipeline.load_info(small_shards)
  videos = list(csv.DictReader(open(os.path.join(small_shards, "videos.csv"))))
  train = {v["video_id"] for v in videos if v["split"] == "train"}
  frames = []
  for r in _rows(small_corpus):
    if r["video_id"] in train:
      v = outputs.load_npz(os.path.join(os.path.dirname(small_corpus), r["path"]))
      frames.append(v["features"][v["valid"]])
  frames = np.concatenate(frames).astype(np.float64)
  np.testing.assert_allclose(info["normalization"]["mean"], frames.mean(0), atol=1e-6)
  np.testing.assert_allclose(info["normalization"]["std"], frames.std(0), rtol=1e-5)
  assert info["splits"]["train"]["num_videos"] == len(train)


def test_dataset_json_records_what_readers_need(small_shards):
  info = input_pipeline.load_info(small_shards)
  assert info["feature_space"] == "flame53" and info["num_features"] == 53
  assert info["fps"] == 25.0 and info["source_fps"] == {"25.0": 20}
  assert set(info["label_columns"]) == {"stress", "depression", "extraversion"}
  for split in info["splits"].values():
    for shard in split["shards"]:
      assert shard["sha256"] == ingest_lib.sha256_of(os.path.join(small_shards, shard["path"]))
      assert sum(shard["record_frames"]) == shard["num_frames"]
  frames = [s["num_frames"] for s in info["splits"]["train"]["shards"]]
  assert max(frames) - min(frames) <= 128  # balanced to within one chunk


def test_subject_normalisation_stores_each_subjects_mean(small_corpus, tmp_path):
  info = ingest_lib.ingest(small_corpus, str(tmp_path), ingest_lib.IngestOptions(
      num_shards=1, normalize="subject", num_processes=1))
  stats = info["normalization"]
  assert stats["mode"] == "subject" and len(stats["subject_mean"]) == 10
  row = _rows(small_corpus)[0]
  v = outputs.load_npz(os.path.join(os.path.dirname(small_corpus), row["path"]))
  own = [outputs.load_npz(os.path.join(os.path.dirname(small_corpus), r["path"]))
         for r in _rows(small_corpus) if r["subject_id"] == row["subject_id"]]
  # Float64 on both sides (ingest sums float64 moments): only the summation order differs.
  frames = np.concatenate([o["features"][o["valid"]] for o in own]).astype(np.float64)
  np.testing.assert_allclose(stats["subject_mean"][row["subject_id"]], frames.mean(0),
                             rtol=1e-12, atol=1e-12 * np.abs(frames).max())
  del v


def test_nonfinite_frames_become_invalid_and_are_counted(small_corpus, tmp_path):
  rows = _copy_corpus(small_corpus, tmp_path)[:4]
  v = outputs.load_npz(rows[0]["path"])
  v["features"][[3, 7]] = np.nan
  v["features"][9, 2] = np.inf
  v["valid"][:] = True
  outputs.save_npz(str(tmp_path / "bad.npz"), **v)
  rows[0]["path"] = str(tmp_path / "bad.npz")
  for r in rows:
    r["split"] = "train"
  info = ingest_lib.ingest(_write_manifest(tmp_path / "m.csv", rows), str(tmp_path / "out"),
                           OPTIONS)
  assert info["num_nonfinite_frames"] == 3
  x, valid, _ = _read_back(str(tmp_path / "out"))[rows[0]["video_id"]]
  assert not valid[[3, 7, 9]].any() and np.isfinite(x).all()


def test_other_formats_and_resampling(tmp_path):
  rng = np.random.default_rng(0)
  x30 = rng.standard_normal((90, 53)).astype(np.float32)   # 3 s at 30 fps
  np.save(tmp_path / "a.npy", x30)
  names = [f"exp_{i:02d}" for i in range(50)] + ["jaw_0", "jaw_1", "jaw_2"]
  with open(tmp_path / "b.csv", "w") as f:
    f.write("frame," + ",".join(names) + "\n")
    for t in range(50):
      f.write(f"{t}," + ",".join(f"{v:.6f}" for v in x30[t]) + "\n")
  for t in range(40):
    frame = tmp_path / "c" / f"{t:06d}"
    frame.mkdir(parents=True)
    np.save(frame / "exp.npy", x30[t, :50][None])
    np.save(frame / "pose.npy", np.concatenate([np.zeros(3), x30[t, 50:]])[None])
  rows = [{"video_id": "a", "subject_id": "s1", "path": "a.npy", "fps": "30", "split": "train"},
          {"video_id": "b", "subject_id": "s2", "path": "b.csv", "fps": "25", "split": "train"},
          {"video_id": "c", "subject_id": "s3", "path": "c", "fps": "25", "split": "val"}]
  info = ingest_lib.ingest(_write_manifest(tmp_path / "m.csv", rows), str(tmp_path / "out"),
                           OPTIONS)
  assert info["fps"] == 25.0 and info["source_fps"] == {"30.0": 1, "25.0": 2}
  back = _read_back(str(tmp_path / "out"))
  assert len(back["a"][0]) == 75  # (90 - 1) / 30 s at 25 fps, both ends included
  np.testing.assert_allclose(back["a"][0][5], x30[6], atol=1e-6)  # t = 0.2 s
  np.testing.assert_allclose(back["b"][0], x30[:50], atol=1e-5)
  np.testing.assert_allclose(back["c"][0], x30[:40], atol=1e-6)


def _bad_case(case, tmp_path, rows):
  bad = tmp_path / "bad"
  bad.mkdir(exist_ok=True)
  if case == "unreadable":
    (bad / "x.npz").write_bytes(b"not a zip file")
    rows[1]["path"] = str(bad / "x.npz")
    return "not a readable .npz file"
  if case == "empty":
    outputs.save_npz(str(bad / "x.npz"), features=np.zeros((0, 53), np.float32), fps=25.0)
    rows[1]["path"] = str(bad / "x.npz")
    return "empty video"
  if case == "shape":
    np.save(bad / "x.npy", np.zeros(10, np.float32))
    rows[1]["path"] = str(bad / "x.npy")
    rows[1]["fps"] = "25"
    return "must be a [frames, features] matrix"
  if case == "width":
    np.save(bad / "x.npy", np.zeros((30, 12), np.float32))
    rows[1]["path"] = str(bad / "x.npy")
    rows[1]["fps"] = "25"
    return "feature names differ"
  if case == "duplicate":
    rows[1]["video_id"] = rows[0]["video_id"]
    return "duplicate video_id"
  if case == "missing":
    rows[1]["path"] = str(bad / "nowhere.npz")
    return "missing file"
  raise AssertionError(case)


@pytest.mark.parametrize("case", ["unreadable", "empty", "shape", "width", "duplicate",
                                  "missing"])
def test_bad_input_stops_with_one_line_and_writes_nothing(case, small_corpus, tmp_path):
  rows = _copy_corpus(small_corpus, tmp_path)[:3]
  for r in rows:
    r["fps"] = ""
  expected = _bad_case(case, tmp_path, rows)
  out = tmp_path / "out"
  with pytest.raises(ingest_lib.InputError, match=re.escape(expected)) as e:
    ingest_lib.ingest(_write_manifest(tmp_path / "m.csv", rows), str(out), OPTIONS)
  assert "\n" not in str(e.value)
  assert not out.exists() or os.listdir(out) == []


def test_existing_dataset_is_not_overwritten_without_the_flag(small_corpus, small_shards):
  with pytest.raises(ingest_lib.InputError, match="--overwrite"):
    ingest_lib.ingest(small_corpus, small_shards, OPTIONS)


def test_workers_write_disjoint_shards_that_merge_to_the_single_machine_result(
    small_corpus, small_shards, tmp_path):
  out = str(tmp_path / "multi")
  for w in range(2):
    ingest_lib.ingest_worker(small_corpus, out, ingest_lib.IngestOptions(
        num_shards=2, chunk_frames=128, val_fraction=0.2, test_fraction=0.1, num_processes=1,
        num_workers=2, worker_index=w, fps=25.0))
  merged = ingest_lib.merge_workers(out, "global", 2)
  single = input_pipeline.load_info(small_shards)
  np.testing.assert_allclose(merged["normalization"]["mean"], single["normalization"]["mean"],
                             atol=1e-9)
  for split in single["splits"]:
    assert merged["splits"][split]["num_frames"] == single["splits"][split]["num_frames"]
  paths = [s["path"] for sp in merged["splits"].values() for s in sp["shards"]]
  assert len(paths) == len(set(paths)) and all("-w00" in p for p in paths)
  assert set(_read_back(out)) == set(_read_back(small_shards))
  assert json.load(open(os.path.join(out, "dataset.json")))["format_version"] == 1
