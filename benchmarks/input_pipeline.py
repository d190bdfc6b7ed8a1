"""Frames per second the tf.data input pipeline delivers from the default synthetic shards.

  python -m benchmarks.input_pipeline [--data_dir=SHARDS] [--steps=200]

Without `--data_dir` it writes the default synthetic corpus and ingests it into a temporary
folder first (about 20 s). It times `train_dataset` (parse, normalise, window, shuffle, batch)
at the reference batch (256 windows of 64 frames), as numpy batches and as global jax.Arrays,
and the cost of resuming the stream at a late step (the epoch skip of `input_pipeline`).
"""

import os
import tempfile
import time

from absl import app
from absl import flags

from dfe_jax.data import ingest_lib
from dfe_jax.data import input_pipeline
from dfe_jax.training import device_batches
from dfe_jax.training import device_mesh

from dfe_jax.synthetic import synth_lib

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Ingested shards (default: make them).")
_STEPS = flags.DEFINE_integer("steps", 200, "Batches to time.")
_BATCH = flags.DEFINE_integer("batch", 256, "Windows per batch.")
_WINDOW = flags.DEFINE_integer("window", 64, "Frames per window.")


def _dataset(data_dir, info, start_step=0):
  return input_pipeline.train_dataset(
      data_dir, info, window_frames=_WINDOW.value, window_stride=_WINDOW.value // 2,
      local_batch_size=_BATCH.value, seed=0, start_step=start_step)


def _frames_per_second(batches, steps):
  """(frames/s of wall time, frames per CPU-second of this process: per host core busy)."""
  next(batches)  # Start-up (tracing the tf.data graph) is not throughput.
  start, cpu = time.perf_counter(), time.process_time()
  for _ in range(steps):
    next(batches)
  frames = steps * _BATCH.value * _WINDOW.value
  return (frames / (time.perf_counter() - start),
          frames / max(time.process_time() - cpu, 1e-9))


def main(argv):
  del argv
  data_dir = _DATA_DIR.value
  if data_dir is None:
    tmp = tempfile.mkdtemp(prefix="dfe_bench_")
    manifest = synth_lib.write_corpus(synth_lib.CorpusSpec(), os.path.join(tmp, "corpus"),
                                  num_workers=2)
    data_dir = os.path.join(tmp, "shards")
    ingest_lib.ingest(manifest, data_dir, ingest_lib.IngestOptions())
  info = input_pipeline.load_info(data_dir)
  numpy_fps, per_core = _frames_per_second(_dataset(data_dir, info).as_numpy_iterator(),
                                           _STEPS.value)
  mesh = device_mesh.make_mesh()
  global_fps, _ = _frames_per_second(
      device_batches.global_batches(_dataset(data_dir, info), mesh), _STEPS.value)
  per_epoch = input_pipeline.count_windows(info["splits"]["train"]["shards"], _WINDOW.value,
                                           _WINDOW.value // 2) // _BATCH.value
  late = 1000 * per_epoch + per_epoch - 1  # the last step of epoch 1000: worst case
  start = time.perf_counter()
  next(_dataset(data_dir, info, start_step=late).as_numpy_iterator())
  resume_seconds = time.perf_counter() - start
  frames = info["splits"]["train"]["num_frames"]
  print(f"train split: {frames} frames, {per_epoch} batches per epoch")
  print(f"numpy batches:       {numpy_fps:,.0f} frames/s; {per_core:,.0f} frames per host "
        "core-second (host cores one accelerator needs = its train frames/s / this)")
  print(f"global jax.Arrays:   {global_fps:,.0f} frames/s ({mesh.devices.size} device(s), "
        "prefetched 2 ahead)")
  print(f"resume at step {late:,} (epoch 1000, its last batch): first batch after "
        f"{resume_seconds:.1f} s")


if __name__ == "__main__":
  app.run(main)
