"""Ingest: exact round trip, subject-disjoint splits, train-only statistics, clear errors; the
Beam pipeline's determinism across workers, its combiner's statistics, and loading with TFDS."""

import csv
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dfe_jax.data import ingest_lib
from dfe_jax.data import ingest_pipeline
from dfe_jax.data import input_pipeline
from dfe_jax.data import moments
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import normalization
from dfe_jax.formats import outputs
from dfe_jax.formats import video_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
  # The pipeline's combiner (per-video moments merged with Chan's formula) against one NumPy
  # pass over the same frames: equal up to float64 rounding of different summation orders.
  scale = np.abs(frames).max()
  np.testing.assert_allclose(info["normalization"]["mean"], frames.mean(0), rtol=1e-12,
                             atol=1e-13 * scale)
  np.testing.assert_allclose(info["normalization"]["std"], frames.std(0), rtol=1e-12)
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
    return video_files.VideoFileError, "not a readable .npz file"
  if case == "empty":
    outputs.save_npz(str(bad / "x.npz"), features=np.zeros((0, 53), np.float32), fps=25.0)
    rows[1]["path"] = str(bad / "x.npz")
    return video_files.VideoFileError, "empty video"
  if case == "shape":
    np.save(bad / "x.npy", np.zeros(10, np.float32))
    rows[1]["path"] = str(bad / "x.npy")
    rows[1]["fps"] = "25"
    return video_files.VideoFileError, "must be a [frames, features] matrix"
  if case == "width":
    np.save(bad / "x.npy", np.zeros((30, 12), np.float32))
    rows[1]["path"] = str(bad / "x.npy")
    rows[1]["fps"] = "25"
    return video_files.VideoFileError, "feature names differ"
  if case == "duplicate":
    rows[1]["video_id"] = rows[0]["video_id"]
    return manifest_format.ManifestError, "duplicate video_id"
  if case == "missing":
    rows[1]["path"] = str(bad / "nowhere.npz")
    return manifest_format.ManifestError, "missing file"
  raise AssertionError(case)


@pytest.mark.parametrize("case", ["unreadable", "empty", "shape", "width", "duplicate",
                                  "missing"])
def test_bad_input_stops_with_one_line_and_writes_nothing(case, small_corpus, tmp_path):
  rows = _copy_corpus(small_corpus, tmp_path)[:3]
  for r in rows:
    r["fps"] = ""
  error, expected = _bad_case(case, tmp_path, rows)
  out = tmp_path / "out"
  with pytest.raises(error, match=re.escape(expected)) as e:
    ingest_lib.ingest(_write_manifest(tmp_path / "m.csv", rows), str(out), OPTIONS)
  assert "\n" not in str(e.value)
  assert not out.exists() or os.listdir(out) == []


def test_existing_dataset_is_not_overwritten_without_the_flag(small_corpus, small_shards):
  with pytest.raises(ingest_lib.IngestError, match="--overwrite"):
    ingest_lib.ingest(small_corpus, small_shards, OPTIONS)


def test_moments_combiner_merges_in_any_order_to_one_numpy_pass():
  # Frames far from zero with a small spread: sums of x and x^2 would lose ~8 digits of the
  # variance to cancellation; Chan's merge of centred moments keeps float64 accuracy.
  rng = np.random.default_rng(0)
  x = 1e4 + 1e-2 * rng.standard_normal((5000, 3))
  cuts = np.sort(rng.choice(np.arange(1, len(x)), 40, replace=False))
  parts = [moments.Moments.of(p) for p in np.split(x, cuts)] + [moments.Moments.zeros(3)]
  combiner = ingest_pipeline.MomentsCombineFn()
  results = []
  for seed in range(3):  # Different groupings and orders, as workers would merge them.
    order = np.random.default_rng(seed).permutation(len(parts))
    groups = np.array_split(order, 4)
    accumulators = []
    for group in groups:
      acc = combiner.create_accumulator()
      for i in group:
        acc = combiner.add_input(acc, parts[i])
      accumulators.append(acc)
    results.append(combiner.extract_output(combiner.merge_accumulators(accumulators)))
  for m in results:
    assert m.count == len(x)
    np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(m.m2 / m.count, x.var(0), rtol=1e-9)
    np.testing.assert_allclose(m.std(), x.std(0), rtol=1e-9)


def test_shard_plan_is_balanced_and_independent_of_arrival_order():
  rng = np.random.default_rng(1)
  videos = [{"row": i, "split": "train" if i % 4 else "val",
             "records": [(s, int(n)) for s, n in zip(range(0, 1000, 128),
                                                     rng.integers(1, 129, rng.integers(1, 6)))]}
            for i in range(30)]
  plan, counts = ingest_pipeline.plan_shards(videos, num_shards=4)
  shuffled, _ = ingest_pipeline.plan_shards([videos[i] for i in rng.permutation(30)], 4)
  assert plan == shuffled and counts == {"train": 4, "val": 4}
  frames = np.zeros(4)
  for v in videos:
    if v["split"] == "train":
      for start, n in v["records"]:
        frames[plan["train"][(v["row"], start)]] += n
  assert frames.max() - frames.min() <= 128  # Greedy balance: within one record.
  few, counts = ingest_pipeline.plan_shards(videos[:1], num_shards=4)
  assert counts == {"val": len(videos[0]["records"])}  # Fewer records than shards: no empties.
  assert sorted(few["val"].values()) == list(range(len(videos[0]["records"])))


def test_two_worker_processes_write_the_same_bytes_as_one(small_corpus, small_shards, tmp_path):
  out = str(tmp_path / "two")
  ingest_lib.ingest(small_corpus, out, ingest_lib.IngestOptions(
      num_shards=2, chunk_frames=128, val_fraction=0.2, test_fraction=0.1, num_processes=2,
      beam_options=("--direct_running_mode=multi_processing",)))
  one, two = input_pipeline.load_info(small_shards), input_pipeline.load_info(out)
  # Same files, same bytes (sha256 of each), hence the same training stream.
  assert two["splits"] == one["splits"]
  for split in one["splits"].values():
    for shard in split["shards"]:
      assert ingest_lib.sha256_of(os.path.join(out, shard["path"])) == shard["sha256"]
  with open(os.path.join(out, "videos.csv")) as a, open(os.path.join(small_shards,
                                                                     "videos.csv")) as b:
    assert a.read() == b.read()
  np.testing.assert_allclose(two["normalization"]["mean"], one["normalization"]["mean"],
                             rtol=1e-13, atol=1e-15)
  np.testing.assert_allclose(two["normalization"]["std"], one["normalization"]["std"],
                             rtol=1e-13)
  rest = {k: v for k, v in two.items() if k != "normalization"}
  assert rest == {k: v for k, v in one.items() if k != "normalization"}


def test_tfds_reads_each_split_as_the_input_pipeline_does(small_shards):
  tfds = pytest.importorskip("tensorflow_datasets")
  info = input_pipeline.load_info(small_shards)
  builder = tfds.builder_from_directory(small_shards)
  window = 64
  for split, entry in info["splits"].items():
    assert builder.info.splits[split].num_examples == sum(s["num_records"]
                                                          for s in entry["shards"])
    # Files in shard order, one at a time: the order our eval pipeline reads them in.
    examples = tfds.as_numpy(builder.as_dataset(
        split=split, shuffle_files=False,
        read_config=tfds.ReadConfig(interleave_cycle_length=1)))
    windows, masks = [], []
    for ex in examples:
      assert ex["features"].dtype == np.float32 and ex["valid"].dtype == bool
      assert len(ex["features"]) == ex["num_frames"] == len(ex["valid"])
      x = normalization.normalize(info["normalization"], ex["features"],
                                  ex["subject_id"].decode())
      x = np.where(ex["valid"][:, None], x, 0.0).astype(np.float32)
      for start in input_pipeline.window_starts(len(x), window, window):
        pad = max(0, start + window - len(x))
        windows.append(np.pad(x[start:start + window], ((0, pad), (0, 0))))
        masks.append(np.pad(ex["valid"][start:start + window], (0, pad)))
    batches = list(input_pipeline.eval_dataset(small_shards, info, split, window_frames=window,
                                               local_batch_size=16).as_numpy_iterator())
    ours_x = np.concatenate([b["x"] for b in batches])[:len(windows)]
    ours_mask = np.concatenate([b["mask"] for b in batches])[:len(windows)]
    np.testing.assert_array_equal(ours_mask, np.array(masks))
    np.testing.assert_allclose(ours_x, np.array(windows), rtol=1e-6, atol=1e-6)


def test_deprecated_worker_flags_say_so_in_one_line_and_do_nothing_else(tmp_path):
  for flags in (["--merge"], ["--num_workers=2", "--worker_index=1"]):
    done = subprocess.run([sys.executable, "-m", "dfe_jax.ingest", f"--output_dir={tmp_path}",
                           "--manifest=unused.csv", *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "deprecated" in lines[0] and "--beam_pipeline_options" in lines[0]
  assert os.listdir(tmp_path) == []


def test_beam_pipeline_options_take_beams_flags_or_the_tfds_form():
  from dfe_jax.data import beam_options  # pylint: disable=g-import-not-at-top
  beams = beam_options.parse('--runner=DataflowRunner --project=p --labels="a=b c"')
  assert beams == ["--runner=DataflowRunner", "--project=p", "--labels=a=b c"]
  assert beam_options.parse("runner=DataflowRunner, project=p") == beams[:2]
  assert beam_options.parse("") == []
  cluster = beam_options.pipeline_options(beams[:2], num_workers=2).get_all_options()
  assert cluster["runner"] == "DataflowRunner" and cluster["direct_running_mode"] != (
      "multi_threading")  # Local defaults only for the DirectRunner.
  local = beam_options.pipeline_options([], num_workers=2).get_all_options()
  assert (local["runner"], local["direct_num_workers"], local["direct_running_mode"]) == (
      "DirectRunner", 2, "multi_threading")
  mine = beam_options.pipeline_options(["--direct_num_workers=1"], num_workers=2)
  assert mine.get_all_options()["direct_running_mode"] == "in_memory"


def test_the_manifest_fps_column_overrides_the_files_rate_everywhere(tmp_path):
  """One rule (video_files.frame_rate): the rate ingest records is the rate it resamples from."""
  path = str(tmp_path / "v.npz")
  outputs.save_npz(path, features=np.zeros((30, 4), np.float32), fps=30.0)
  row = {"video_id": "v", "subject_id": "s", "path": path, "fps": "15"}
  video = ingest_lib.load_and_resample(row, 15.0)
  assert ingest_lib.source_fps(row) == video["source_fps"] == 15.0
  assert len(video["features"]) == 30  # Already at 15 fps: nothing resampled.
  row["fps"] = ""
  assert ingest_lib.source_fps(row) == ingest_lib.load_and_resample(row, 15.0)["source_fps"] == 30.0
