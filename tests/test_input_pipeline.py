"""Input pipeline: shapes and shardings, per-process shards, determinism and exact resume."""

import itertools
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from dfe_jax.data import ingest_lib
from dfe_jax.data import input_pipeline
from dfe_jax.formats import normalization
from dfe_jax.training import device_batches
from dfe_jax.training import device_mesh

WINDOW = 32


def _take(ds, n):
  return [b for b in itertools.islice(ds.as_numpy_iterator(), n)]


def _train(info, shards, seed=0, start_step=0, process_index=0, process_count=1, batch=8):
  return input_pipeline.train_dataset(
      shards, info, window_frames=WINDOW, window_stride=16, local_batch_size=batch, seed=seed,
      start_step=start_step, shuffle_buffer=64, process_index=process_index,
      process_count=process_count)


def test_global_batches_are_sharded_over_eight_devices(small_shards):
  info = input_pipeline.load_info(small_shards)
  mesh = device_mesh.make_mesh(8)
  batch = next(device_batches.global_batches(_train(info, small_shards, batch=16), mesh))
  assert jax.device_count() == 8
  assert batch["x"].shape == (16, WINDOW, 53) and batch["mask"].shape == (16, WINDOW)
  assert batch["x"].sharding.spec == jax.sharding.PartitionSpec("data")
  assert len(batch["x"].addressable_shards) == 8
  assert batch["x"].addressable_shards[0].data.shape == (2, WINDOW, 53)


def test_batches_are_normalised_and_masked(small_shards):
  info = input_pipeline.load_info(small_shards)
  batches = _take(_train(info, small_shards, batch=64), 20)
  x = np.concatenate([b["x"][b["mask"]] for b in batches])
  assert abs(x.mean()) < 0.15 and 0.8 < x.std() < 1.2
  for b in batches:
    np.testing.assert_array_equal(b["x"][~b["mask"]], 0.0)


def _records(folder, shards):
  """(features [T, D], valid [T], subject_id) of every record of `shards`, in reading order."""
  for shard in shards:
    for raw in tf.data.TFRecordDataset(os.path.join(folder, shard["path"])):
      ex = tf.train.Example.FromString(raw.numpy()).features.feature
      n = ex["num_frames"].int64_list.value[0]
      x = np.frombuffer(ex["features"].bytes_list.value[0], "<f4").reshape(n, -1)
      valid = np.frombuffer(ex["valid"].bytes_list.value[0], np.uint8).astype(bool)
      yield x, valid, ex["subject_id"].bytes_list.value[0].decode()


@pytest.mark.parametrize("mode", normalization.MODES)
def test_frames_are_normalised_by_the_numpy_rule(mode, small_corpus, small_shards, tmp_path):
  """Every frame tf.data yields equals `formats.normalization.normalize` of the raw frame, in
  both modes: the TensorFlow code only looks up the offsets of the one NumPy rule."""
  shards = small_shards
  if mode != "global":
    shards = str(tmp_path / "shards")
    ingest_lib.ingest(small_corpus, shards, ingest_lib.IngestOptions(
        num_shards=2, chunk_frames=128, normalize=mode, num_processes=1))
  info = input_pipeline.load_info(shards)
  stats = info["normalization"]
  assert stats["mode"] == mode and info["chunk_frames"] == 128
  for split, entry in info["splits"].items():
    # One window per record (window = chunk_frames), padded like the pipeline pads.
    xs, masks = [], []
    for x, valid, subject in _records(shards, entry["shards"]):
      x = np.where(valid[:, None], normalization.normalize(stats, x, subject), 0.0)
      xs.append(np.pad(x, ((0, 128 - len(x)), (0, 0))))
      masks.append(np.pad(valid, (0, 128 - len(valid))))
    batches = list(input_pipeline.eval_dataset(shards, info, split, window_frames=128,
                                               local_batch_size=8).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b["mask"] for b in batches])[:len(xs)], masks)
    np.testing.assert_allclose(np.concatenate([b["x"] for b in batches])[:len(xs)], xs,
                               rtol=1e-6, atol=1e-6)


def test_two_processes_read_disjoint_shards_that_cover_all(small_shards):
  info = input_pipeline.load_info(small_shards)
  p0 = input_pipeline.process_shards(info, "train", 0, 2)
  p1 = input_pipeline.process_shards(info, "train", 1, 2)
  names0, names1 = {s["path"] for s in p0}, {s["path"] for s in p1}
  assert names0 and names1 and not names0 & names1
  assert names0 | names1 == {s["path"] for s in info["splits"]["train"]["shards"]}
  b0 = _take(_train(info, small_shards, process_index=0, process_count=2), 3)
  b1 = _take(_train(info, small_shards, process_index=1, process_count=2), 3)
  assert not np.array_equal(b0[0]["x"], b1[0]["x"])


def test_same_seed_same_batches_other_seed_other_batches(small_shards):
  info = input_pipeline.load_info(small_shards)
  a, b = _take(_train(info, small_shards, seed=5), 6), _take(_train(info, small_shards, seed=5), 6)
  c = _take(_train(info, small_shards, seed=6), 6)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["x"], y["x"])
    np.testing.assert_array_equal(x["mask"], y["mask"])
  assert not np.array_equal(a[0]["x"], c[0]["x"])


@pytest.mark.parametrize("k", [3, 50, 137])
def test_stream_resumed_at_step_k_equals_the_uninterrupted_stream(small_shards, k):
  info = input_pipeline.load_info(small_shards)
  per_epoch = input_pipeline.count_windows(info["splits"]["train"]["shards"], WINDOW, 16)
  assert 137 * 8 > 2 * per_epoch  # the last case starts two epochs in
  full = _take(_train(info, small_shards), k + 2)
  resumed = _take(_train(info, small_shards, start_step=k), 2)
  for x, y in zip(full[k:], resumed):
    np.testing.assert_array_equal(x["x"], y["x"])
    np.testing.assert_array_equal(x["mask"], y["mask"])


def test_eval_visits_every_valid_frame_once_with_equal_steps_per_process(small_shards):
  info = input_pipeline.load_info(small_shards)
  steps = input_pipeline.eval_num_steps(info, "val", WINDOW, 4, 2)
  seen = 0
  for p in range(2):
    batches = _take(input_pipeline.eval_dataset(
        small_shards, info, "val", window_frames=WINDOW, local_batch_size=4, process_index=p,
        process_count=2), 10_000)
    assert len(batches) == steps
    seen += sum(int(b["mask"].sum()) for b in batches)
  assert seen == info["splits"]["val"]["num_valid_frames"]


def test_window_starts_cover_every_frame():
  for n in (1, 31, 32, 33, 100, 128):
    starts = input_pipeline.window_starts(n, WINDOW, WINDOW)
    covered = np.concatenate([np.arange(s, s + WINDOW) for s in starts])
    np.testing.assert_array_equal(np.sort(covered[covered < n]), np.arange(n))
    assert len(covered) - n < WINDOW


def test_missing_dataset_json_and_indivisible_batch_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="run `python -m dfe_jax.ingest` first"):
    input_pipeline.load_info(str(tmp_path))
  with pytest.raises(ValueError, match="not divisible by the 8 devices"):
    device_batches.check_batch_size(12, device_mesh.make_mesh(8))


def test_prefetched_batches_are_the_same_stream(small_shards):
  """Two batches in flight on a background thread: the same batches in the same order."""
  info = input_pipeline.load_info(small_shards)
  mesh = device_mesh.make_mesh(8)
  plain = device_batches.global_batches(_train(info, small_shards, batch=16), mesh, prefetch=0)
  ahead = device_batches.global_batches(_train(info, small_shards, batch=16), mesh, prefetch=2)
  for _ in range(6):
    a, b = next(plain), next(ahead)
    assert b["x"].sharding == a["x"].sharding
    np.testing.assert_array_equal(np.asarray(a["x"]), np.asarray(b["x"]))
    np.testing.assert_array_equal(np.asarray(a["mask"]), np.asarray(b["mask"]))


def test_prefetch_raises_the_producers_error_in_order():
  def items():
    yield 1
    yield 2
    raise ValueError("bad record")
  stream = device_batches.prefetched(items(), 2)
  assert [next(stream), next(stream)] == [1, 2]
  with pytest.raises(ValueError, match="bad record"):
    next(stream)
