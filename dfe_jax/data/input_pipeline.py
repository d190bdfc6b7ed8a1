"""tf.data over the ingest shards: per-process batches of windows of normalised frames.

Legend: B batch (windows), W window frames, D features, N subjects.

**Determinism and resume.** Each process reads its own shard files (`files[i::P]`). Epoch `e`
of a process is a pure function of `(seed, e)`: its files in an order drawn from
`(seed, e)`, the windows of each record in order, shuffled with a buffer seeded by
`(seed, e)`. The stream is the epochs one after another, batched. Because the number of
windows per epoch is known from `dataset.json` (`record_frames`), the stream can start at
any step `k` without replaying it: skip `k * local_batch // windows_per_epoch` whole epochs
for free and then `k * local_batch % windows_per_epoch` windows of one epoch. Resuming thus
costs at most reading one epoch of this process's shards (a few seconds per million frames
here, see `benchmarks/input_pipeline.py`), however late the step.
"""

import os

import numpy as np
import tensorflow as tf

from dfe_jax.formats import dataset_info
from dfe_jax.formats import normalization

_FEATURES = {
    "video_id": tf.io.FixedLenFeature([], tf.string),
    "subject_id": tf.io.FixedLenFeature([], tf.string),
    "start_frame": tf.io.FixedLenFeature([], tf.int64),
    "num_frames": tf.io.FixedLenFeature([], tf.int64),
    "fps": tf.io.FixedLenFeature([], tf.float32),
    "features": tf.io.FixedLenFeature([], tf.string),
    "valid": tf.io.FixedLenFeature([], tf.string),
}


def load_info(data_dir):
  """A shard folder's `dataset.json`, through its one reader (which checks the version)."""
  return dataset_info.read(os.path.join(data_dir, "dataset.json"))


def process_shards(info, split, process_index, process_count):
  """This process's shard entries of `split`: every `process_count`-th file."""
  if split not in info["splits"]:
    raise ValueError(f"dataset has no {split!r} split (has {', '.join(info['splits'])})")
  return info["splits"][split]["shards"][process_index::process_count]


def window_starts(num_frames, window_frames, stride):
  """First frames of the windows cut from a record: 0, stride, ... until every frame is in one.

  The last window may run past the record; those frames are padding with mask false. With
  `stride == window_frames` every frame is in exactly one window (the eval rule).
  """
  return np.arange(0, max(num_frames - window_frames, 0) + stride, stride, dtype=np.int64)


def count_windows(shards, window_frames, stride):
  """Windows one pass over `shards` yields."""
  return int(sum(len(window_starts(n, window_frames, stride))
                 for shard in shards for n in shard["record_frames"]))


def _tf_window_starts(n, window_frames, stride):
  return tf.range(0, tf.maximum(n - window_frames, 0) + stride, stride, dtype=tf.int64)


def _normalizer(info):
  """A tf function (x [T, D], subject_id) -> normalised x, from dataset.json's statistics.

  The offsets and scale come from `formats/normalization` (the one rule); here rows are only
  looked up by subject.
  """
  subject_ids, offset_ND, scale_D = normalization.offset_table(info["normalization"])
  offset_ND, scale_D = tf.constant(offset_ND), tf.constant(scale_D)
  if subject_ids is None:
    return lambda x, subject_id: (x - offset_ND[0]) / scale_D
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(subject_ids, tf.range(len(subject_ids), dtype=tf.int64)),
      default_value=-1)

  def normalize(x, subject_id):
    index = table.lookup(subject_id)
    tf.debugging.assert_non_negative(index, "subject without normalisation statistics")
    return (x - offset_ND[index]) / scale_D
  return normalize


def _record_windows(info, window_frames, stride):
  """A tf function: serialized record -> (x [N, W, D], mask [N, W]) of its windows."""
  num_features = info["num_features"]
  normalize = _normalizer(info)

  def parse(serialized):
    ex = tf.io.parse_single_example(serialized, _FEATURES)
    n = ex["num_frames"]
    x = tf.reshape(tf.io.decode_raw(ex["features"], tf.float32), [-1, num_features])
    valid = tf.cast(tf.io.decode_raw(ex["valid"], tf.uint8), tf.bool)
    x = tf.where(valid[:, None], normalize(x, ex["subject_id"]), 0.0)
    starts = _tf_window_starts(n, window_frames, stride)
    pad = starts[-1] + window_frames - n
    x = tf.pad(x, [[0, pad], [0, 0]])
    valid = tf.pad(valid, [[0, pad]])
    index = starts[:, None] + tf.range(window_frames, dtype=tf.int64)
    return tf.gather(x, index), tf.gather(valid, index)
  return parse


def _leave_accelerators_to_jax():
  """The pipeline runs on the host: TensorFlow must not claim GPU memory that JAX needs."""
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow's devices are already initialised (and hidden before).
    pass


def _windows(info, files, window_frames, stride):
  """The windows of `files` in order, one (x [W, D], mask [W]) at a time."""
  _leave_accelerators_to_jax()
  ds = tf.data.TFRecordDataset(files)
  ds = ds.map(_record_windows(info, window_frames, stride), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  return ds.unbatch()


def train_dataset(data_dir, info, *, window_frames, window_stride, local_batch_size, seed,
                  start_step=0, shuffle_buffer=4096, process_index=0, process_count=1):
  """Endless batches {'x': [b, W, D], 'mask': [b, W]} of this process, from step `start_step`."""
  shards = process_shards(info, "train", process_index, process_count)
  if not shards:
    raise ValueError(f"process {process_index} of {process_count} has no training shard: "
                     f"ingest with --num_shards >= {process_count}")
  files = [os.path.join(data_dir, s["path"]) for s in shards]
  per_epoch = count_windows(shards, window_frames, window_stride)
  position = start_step * local_batch_size
  first_epoch, skip = divmod(position, per_epoch)

  def epoch(e):
    order = tf.random.experimental.stateless_shuffle(
        tf.constant(files), seed=tf.stack([tf.constant(seed, tf.int64), e]))
    windows = _windows(info, order, window_frames, window_stride)
    return windows.shuffle(shuffle_buffer, seed=seed * 1_000_003 + e)

  ds = tf.data.Dataset.range(first_epoch, 2 ** 62).flat_map(epoch).skip(skip)
  ds = ds.batch(local_batch_size, drop_remainder=True)
  ds = ds.map(lambda x, m: {"x": x, "mask": m})
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def eval_num_steps(info, split, window_frames, local_batch_size, process_count):
  """Eval steps every process runs: enough for the process with the most windows."""
  return max(-(-count_windows(process_shards(info, split, p, process_count), window_frames,
                              window_frames) // local_batch_size)
             for p in range(process_count))


def eval_dataset(data_dir, info, split, *, window_frames, local_batch_size, process_index=0,
                 process_count=1):
  """Every window of `split` once (stride = window), padded with masked windows to a fixed
  number of batches so all processes run the same number of eval steps."""
  shards = process_shards(info, split, process_index, process_count)
  num_steps = eval_num_steps(info, split, window_frames, local_batch_size, process_count)
  num_windows = count_windows(shards, window_frames, window_frames)
  d = info["num_features"]
  files = [os.path.join(data_dir, s["path"]) for s in shards]
  if files:
    ds = _windows(info, tf.constant(files), window_frames, window_frames)
  else:
    ds = tf.data.Dataset.from_tensors((tf.zeros([window_frames, d]),
                                       tf.zeros([window_frames], tf.bool))).take(0)
  padding = tf.data.Dataset.from_tensors(
      (tf.zeros([window_frames, d]), tf.zeros([window_frames], tf.bool))).repeat(
          num_steps * local_batch_size - num_windows)
  ds = ds.concatenate(padding).batch(local_batch_size, drop_remainder=True)
  return ds.map(lambda x, m: {"x": x, "mask": m}).prefetch(tf.data.AUTOTUNE)
