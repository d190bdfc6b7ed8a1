"""Tokenization: a trained workdir + videos -> tokens in DESIGN's format; codes -> expressions.

The encoding itself (chunks with receptive-field context, bucketed lengths) is in
`chunked_encoder.py`; this module reads videos, normalises them as ingest did, writes the
tokens files atomically and decodes codes back to expression vectors.

Shape legend: T frames, F features, S latent steps, D code_dim, L levels.
"""

import csv
import dataclasses
import io
import os
import time
import uuid

from absl import logging
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from dfe_jax import models
from dfe_jax.data import ingest_lib
from dfe_jax.data import input_pipeline
from dfe_jax.formats import filesystem
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import normalization
from dfe_jax.formats import outputs
from dfe_jax.formats import tokens
from dfe_jax.tokenizer import chunked_encoder


class TokenizeError(ValueError):
  """Videos this model cannot tokenize (other features, wrong shape, empty); names the video."""


@dataclasses.dataclass
class VideoInput:
  """One video to tokenize: raw features [T, F] at the model's frame rate and valid [T]."""
  video_id: str
  subject_id: str
  features: np.ndarray
  valid: np.ndarray
  source_fps: float | None = None


def normalize_subject_videos(info, videos):
  """Normalised features of one subject's videos, as ingest did (subject mean recomputed)."""
  return normalization.normalize_subject_videos(
      info["normalization"], [v.features for v in videos], [v.valid for v in videos])


def denormalize(info, x_TF, subject_mean=None):
  """Back to feature units; in `subject` mode the subject's mean is added when it is given."""
  stats = info["normalization"]
  offset = np.asarray(stats["mean"], np.float32) if subject_mean is None else subject_mean
  return x_TF * np.asarray(stats["std"], np.float32) + offset


def decode_codes(trained, codes_SL, num_frames=None, denormalized=True, subject_mean=None):
  """Expression vectors [T, F] from one video's codes [S, L] (-1 skips a level) in JAX.

  The result is in feature units when `denormalized` (subject-centred in `subject` mode unless
  `subject_mean` is given), else in the model's normalised units.
  """
  codes = jnp.asarray(np.asarray(codes_SL, np.int32)[None])
  x_TF = np.asarray(trained.model.apply(trained.variables, codes,
                                        method=models.Model.decode_codes))[0]
  x_TF = x_TF[:num_frames] if num_frames is not None else x_TF
  return denormalize(trained.info, x_TF, subject_mean) if denormalized else x_TF


def _check_names(names, info, where):
  expected = tuple(info["feature_names"])
  if tuple(names) != expected:
    diff = next((f"column {i} is {a!r}, training had {b!r}" for i, (a, b) in
                 enumerate(zip(names, expected)) if a != b),
                f"{len(names)} features, training had {len(expected)}")
    raise TokenizeError(f"{where}: feature names differ from training ({diff})")


def manifest_subjects(rows, info):
  """Yields each subject's videos (a list of VideoInput) from manifest rows, in their order."""
  order = {}
  for row in rows:
    order.setdefault(row["subject_id"], []).append(row)
  for subject, subject_rows in order.items():
    group = []
    for row in subject_rows:
      video = ingest_lib.load_and_resample(row, float(info["fps"]))
      _check_names(video["feature_names"], info, row["path"])
      group.append(VideoInput(row["video_id"], subject, video["features"], video["valid"],
                              video["source_fps"]))
    yield group


def shard_subjects(data_dir, info, splits=None):
  """Yields each subject's videos from ingest shards, reassembling records by start frame."""
  data_info = input_pipeline.load_info(data_dir)
  _check_names(data_info["feature_names"], info, os.path.join(data_dir, "dataset.json"))
  wanted = splits or list(data_info["splits"])
  files = [os.path.join(data_dir, s["path"]) for split in wanted
           for s in data_info["splits"].get(split, {"shards": []})["shards"]]
  records, subject_of, order = {}, {}, []
  num_features = data_info["num_features"]
  record_features = input_pipeline._FEATURES  # pylint: disable=protected-access
  ds = tf.data.TFRecordDataset(files).map(
      lambda s: tf.io.parse_single_example(s, record_features))
  for ex in ds.as_numpy_iterator():
    vid = ex["video_id"].decode()
    if vid not in records:
      order.append(vid)
      records[vid] = []
    subject_of[vid] = ex["subject_id"].decode()
    x = np.frombuffer(ex["features"], "<f4").reshape(-1, num_features)
    valid = np.frombuffer(ex["valid"], np.uint8).astype(bool)
    records[vid].append((int(ex["start_frame"]), x, valid))
  by_subject = {}
  for vid in order:
    parts = sorted(records.pop(vid), key=lambda r: r[0])
    x = np.concatenate([p[1] for p in parts])
    valid = np.concatenate([p[2] for p in parts])
    x, valid = ingest_lib.resample(x, valid, float(data_info["fps"]), float(info["fps"]))
    by_subject.setdefault(subject_of[vid], []).append(
        VideoInput(vid, subject_of[vid], x, valid, float(data_info["fps"])))
  yield from by_subject.values()


class TokenWriter:
  """Collects per-video tokens into `tokens.npz` (or numbered files) plus `tokens_index.csv`.

  Everything is written into a staging folder first and moved into place at `close()`, so an
  interrupted run leaves the previous output untouched.
  """

  def __init__(self, output_dir, model_config, max_steps_per_file, with_latents):
    self.output_dir = output_dir
    self.staging = os.path.join(output_dir, f".staging-{uuid.uuid4().hex[:8]}")
    filesystem.makedirs(self.staging)
    q = model_config.quantizer
    rvq = q.kind == "rvq"
    self.meta = {"codebook_size": np.int32(q.codebook_size if rvq else 0),
                 "num_levels": np.int32(q.num_levels if rvq else 0),
                 "shared_codebook": np.bool_(q.shared_codebook if rvq else False)}
    self.max_steps = max_steps_per_file
    self.with_latents = with_latents
    self.parts, self.index, self.files = [], [], []

  def add(self, video, codes_SL, latents_SD, valid_S, factor):
    """Adds one video's rows (invalid steps get code -1 at every level and a zero latent)."""
    codes_SL = np.where(valid_S[:, None], codes_SL, -1).astype(np.int32)
    start_S, end_S = chunked_encoder.step_frames(len(valid_S), factor, len(video.features))
    row = {"codes": codes_SL, "valid": valid_S.astype(bool), "frame_start": start_S,
           "frame_end": end_S}
    if self.with_latents:
      row["latents"] = np.where(valid_S[:, None], latents_SD, 0.0).astype(np.float32)
    self.parts.append((video.video_id, row))
    self.index.append({"video_id": video.video_id, "subject_id": video.subject_id,
                       "file": len(self.files), "num_frames": len(video.features),
                       "num_valid_frames": int(video.valid.sum()), "num_steps": len(valid_S),
                       "num_valid_steps": int(valid_S.sum()), "source_fps": video.source_fps})
    if sum(len(r["valid"]) for _, r in self.parts) >= self.max_steps:
      self._flush()

  def _flush(self):
    if not self.parts:
      return
    lengths = [len(r["valid"]) for _, r in self.parts]
    arrays = {k: np.concatenate([r[k] for _, r in self.parts]) for k in self.parts[0][1]}
    path = os.path.join(self.staging, f"part-{len(self.files):05d}.npz")
    tokens.write(path, [v for v, _ in self.parts], lengths, arrays, self.meta)
    self.files.append(path)
    self.parts = []

  def close(self, fps):
    """Moves the files into place (replacing earlier tokens) and writes `tokens_index.csv`."""
    self._flush()
    count = len(self.files)
    names = tokens.shard_names(count)
    for name in filesystem.listdir(self.output_dir):
      if name.startswith("tokens") and (name.endswith(".npz") or name == "tokens_index.csv"):
        filesystem.remove(os.path.join(self.output_dir, name))
    for path, name in zip(self.files, names):
      filesystem.rename(path, os.path.join(self.output_dir, name), overwrite=True)
    filesystem.rmtree(self.staging)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(self.index[0]) + ["fps"])
    writer.writeheader()
    for entry in self.index:
      writer.writerow(dict(entry, file=names[entry["file"]], fps=fps))
    with outputs.atomic_open(os.path.join(self.output_dir, "tokens_index.csv")) as f:
      f.write(buffer.getvalue())
    return [os.path.join(self.output_dir, n) for n in names]

  def abort(self):
    if filesystem.exists(self.staging):
      filesystem.rmtree(self.staging)


def _subjects_of(data, info, splits):
  """(subject groups, number of videos or None) of a manifest CSV, a shard folder, or an
  iterable of VideoInput."""
  if isinstance(data, str):
    if filesystem.isdir(data):
      return shard_subjects(data, info, splits), None
    rows = manifest_format.read(data)
    return manifest_subjects(rows, info), len(rows)
  by_subject = {}
  for v in data:
    by_subject.setdefault(v.subject_id, []).append(v)
  return iter(by_subject.values()), sum(len(g) for g in by_subject.values())


def tokenize_videos(trained, data, output_dir, *, latents=False, chunk_frames=4096,
                    batch_frames=32768, max_steps_per_file=1_000_000, splits=None,
                    overwrite=False):
  """Tokenizes every video of `data` (manifest CSV, shard folder or VideoInputs) into
  `output_dir`; returns a summary dict (files, counts, frames per second)."""
  config = trained.config.model
  if latents is False and config.quantizer.kind == "none":
    raise ValueError("this model has no codebook (quantizer.kind='none'): pass --latents")
  outputs.check_writable_dir(output_dir, overwrite)
  encoder = chunked_encoder.ChunkedEncoder(trained, chunk_frames, batch_frames)
  writer = TokenWriter(output_dir, config, max_steps_per_file, latents)
  block_frames = 8 * batch_frames
  start = time.time()
  totals = {"num_videos": 0, "num_frames": 0, "num_steps": 0}
  block = []

  def run_block():
    normalised = []
    for group in block:
      xs, _ = normalize_subject_videos(trained.info, group)
      normalised += [(x, v.valid) for x, v in zip(xs, group)]
    videos = [v for group in block for v in group]
    for video, (codes, z, valid) in zip(videos, encoder.encode(normalised)):
      writer.add(video, codes, z, valid, encoder.factor)
      totals["num_steps"] += len(valid)
    totals["num_videos"] += len(videos)
    totals["num_frames"] += sum(len(v.features) for v in videos)
    elapsed = max(time.time() - start, 1e-9)
    eta = (f", ETA {elapsed * (num_videos / totals['num_videos'] - 1):.0f} s" if num_videos
           else "")
    logging.info("tokenize: %d/%s videos, %d frames, %.0f frames/s%s", totals["num_videos"],
                 num_videos or "?", totals["num_frames"], totals["num_frames"] / elapsed, eta)
    block.clear()

  try:
    groups, num_videos = _subjects_of(data, trained.info, splits)
    for group in groups:
      for v in group:
        if len(v.features) == 0:
          raise TokenizeError(f"video {v.video_id!r}: empty video (0 frames)")
        if v.features.ndim != 2 or v.features.shape[1] != trained.info["num_features"]:
          raise TokenizeError(f"video {v.video_id!r}: features have shape {v.features.shape}, "
                              f"the model expects [frames, {trained.info['num_features']}]")
      block.append(group)
      if sum(len(v.features) for g in block for v in g) >= block_frames:
        run_block()
    if block:
      run_block()
    if not totals["num_videos"]:
      raise ValueError(f"{data}: no videos to tokenize")
    files = writer.close(trained.info["fps"])
  except BaseException:
    writer.abort()
    raise
  seconds = time.time() - start
  return dict(totals, files=files, seconds=seconds,
              frames_per_second=totals["num_frames"] / max(seconds, 1e-9))


def encode_video(trained, x_TF, valid_T=None, encoder=None):
  """Codes [S, L], latents [S, D] and valid [S] of one already-normalised video, in JAX."""
  encoder = encoder or chunked_encoder.ChunkedEncoder(trained)
  valid_T = np.ones(len(x_TF), bool) if valid_T is None else np.asarray(valid_T, bool)
  return encoder.encode([(np.asarray(x_TF, np.float32), valid_T)])[0]
