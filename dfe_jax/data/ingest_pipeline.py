"""Ingest as an Apache Beam pipeline: per-video files -> staged shards + a summary file.

  rows ─ReadVideos─┬─ records ─AssignShards(plan)─GroupShards─WriteShards ───────────┐
                   └─ videos ─┬─ AllVideos─PlanShards ─▶ plan (side input)           ├─ Summary
                              └─ BySubject(plan)─SubjectMoments─┬─ subject means ────┤
                                                                └─ TrainMoments ─────┘
  rows ─SourceRates─MostCommonRate ─▶ rates (side input of ReadVideos; a constant with --fps)

Records are (row, first frame, split, frames, Example bytes); videos are per-video summaries
(ids, record lengths, float64 moments of the valid frames, or an error).

Determinism: the shard plan is a pure function of the videos' record lengths in manifest order
(`plan_shards`), every shard's records are sorted by (manifest row, first frame) before they are
written, and the records are encoded without TensorFlow in one fixed byte layout. So any number
of workers, on any runner, writes byte-identical shards. Statistics merge with Chan's formula
(`moments`), equal whatever the merge order up to float64 rounding.

Bad input never stops a worker: it becomes an error in the video's summary. The plan names the
first bad video in manifest order; then no shard is written and the summary carries the error,
which `ingest_lib` raises as one line.
"""

import collections
import heapq
import json
import os
import time

import apache_beam as beam
from absl import logging

from dfe_jax.data import moments as moments_lib
from dfe_jax.data import tfrecords
from dfe_jax.formats import filesystem
from dfe_jax.formats import video_files

SUMMARY_FILE = "summary.json"


def shard_name(split, index, num_shards):
  """Shard file name; the split comes first so globs like `train-*` find a split's files, and
  it is TFDS's `{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}` template."""
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def plan_shards(videos, num_shards):
  """Which shard each record goes to: {split: {(row, start): shard}} and shard counts.

  The rule: a split gets min(num_shards, its records) shards; its records, in manifest order
  (row, then first frame), each go to the shard with the fewest frames so far (the lowest index
  on a tie). `videos` are the ReadVideos summaries, in any order.
  """
  by_split = collections.defaultdict(list)
  for v in sorted(videos, key=lambda v: v["row"]):
    for start, n in v["records"]:
      by_split[v["split"]].append((v["row"], start, n))
  plan, counts = {}, {}
  for split, records in by_split.items():
    count = min(num_shards, len(records))
    heap = [(0, s) for s in range(count)]
    assigned = {}
    for row, start, n in records:
      frames, s = heapq.heappop(heap)
      assigned[(row, start)] = s
      heapq.heappush(heap, (frames + n, s))
    plan[split], counts[split] = assigned, count
  return plan, counts


def first_error(videos, rates):
  """The one-line error of the first bad video in manifest order, or None.

  A video is bad when it cannot be read, has no frame rate, or its feature names differ from
  the first readable video's.
  """
  errors = dict(rates["errors"])
  names = None
  for v in sorted(videos, key=lambda v: v["row"]):
    if v["row"] in errors:
      return errors[v["row"]]
    if v["error"]:
      return v["error"]
    if names is None:
      names = v["feature_names"]
    elif v["feature_names"] != names:
      return (f"{v['path']}: feature names differ from the first video's "
              f"({len(v['feature_names'])} vs {len(names)} features: "
              f"{_first_difference(v['feature_names'], names)})")
  return min(errors.items())[1] if errors else None


def _first_difference(a, b):
  for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
      return f"column {i} is {x!r}, expected {y!r}"
  return "different lengths"


class MomentsCombineFn(beam.CombineFn):
  """Merges `moments.Moments` with Chan's formula; the accumulator is None until a first input."""

  def create_accumulator(self):
    return None

  def add_input(self, accumulator, element):
    return element if accumulator is None else accumulator.merge(element)

  def merge_accumulators(self, accumulators):
    return moments_lib.merge_all(a for a in accumulators if a is not None)

  def extract_output(self, accumulator):
    return accumulator


class MostCommonRateFn(beam.CombineFn):
  """The most common source frame rate (ties: the one first in the manifest) and rate errors."""

  def create_accumulator(self):
    return {}, []  # {fps: (count, first row)}, [(row, error)]

  def add_input(self, accumulator, element):
    rates, errors = accumulator
    row, fps, error = element
    if error:
      errors.append((row, error))
    else:
      count, first = rates.get(fps, (0, row))
      rates[fps] = (count + 1, min(first, row))
    return accumulator

  def merge_accumulators(self, accumulators):
    rates, errors = {}, []
    for more_rates, more_errors in accumulators:
      errors.extend(more_errors)
      for fps, (count, first) in more_rates.items():
        had, had_first = rates.get(fps, (0, first))
        rates[fps] = (had + count, min(had_first, first))
    return rates, errors

  def extract_output(self, accumulator):
    rates, errors = accumulator
    best = min(rates.items(), key=lambda kv: (-kv[1][0], kv[1][1]))[0] if rates else None
    return {"fps": best, "errors": sorted(errors)}


def _source_rate(indexed_row, source_fps):
  row, manifest_row = indexed_row
  try:
    return row, source_fps(manifest_row), ""
  except video_files.VideoFileError as e:
    return row, None, str(e)


def _set_up_logging(verbosity):
  """Worker processes log as the launcher does (absl defaults to WARNING outside app.run)."""
  logging.set_verbosity(verbosity)


class ReadVideos(beam.DoFn):
  """Reads, checks and resamples one video; emits its summary and its records (tagged)."""

  RECORDS = "records"

  def __init__(self, split_of, chunk_frames, load, verbosity):
    self._split_of = split_of
    self._chunk_frames = chunk_frames
    self._load = load
    self._verbosity = verbosity

  def setup(self):
    _set_up_logging(self._verbosity)
    self._start = self._last_log = time.monotonic()
    self._videos = self._frames = 0

  def process(self, indexed_row, rates):
    row, manifest_row = indexed_row
    vid, subject = manifest_row["video_id"], manifest_row["subject_id"]
    split = self._split_of[vid]
    summary = {"row": row, "video_id": vid, "subject_id": subject, "split": split,
               "path": manifest_row["path"], "error": "", "records": []}
    if rates["fps"] is None:
      yield summary  # Every rate failed: first_error names the first.
      return
    try:
      video = self._load(manifest_row, rates["fps"])
    except video_files.VideoFileError as e:
      summary["error"] = str(e)
      yield summary
      return
    x, valid = video["features"], video["valid"]
    if not valid.any():
      logging.warning("ingest: %s has no valid frames", manifest_row["path"])
    for begin in range(0, len(x), self._chunk_frames):
      chunk = slice(begin, begin + self._chunk_frames)
      n = len(x[chunk])
      summary["records"].append((begin, n))
      yield beam.pvalue.TaggedOutput(self.RECORDS, (row, begin, split, n, tfrecords.shard_example(
          vid, subject, begin, x[chunk], valid[chunk], rates["fps"])))
    summary.update(feature_names=list(video["feature_names"]), num_frames=len(x),
                   num_valid_frames=int(valid.sum()), num_nonfinite=video["num_nonfinite"],
                   source_fps=video["source_fps"], moments=moments_lib.Moments.of(x[valid]))
    yield summary
    self._log_progress(len(x))

  def _log_progress(self, frames):
    self._videos += 1
    self._frames += frames
    now = time.monotonic()
    if now - self._last_log >= 10.0:
      self._last_log = now
      logging.info("ingest: this worker read %d videos, %d frames, %.0f frames/s", self._videos,
                   self._frames, self._frames / max(now - self._start, 1e-9))


def _subject_moments(video, plan):
  return [] if plan["error"] else [(video["subject_id"], video["moments"])]


def _shard_key(record, plan):
  row, start, split, _, _ = record
  if plan["error"]:
    return []
  shard = plan["shards"][split][(row, start)]
  return [((split, shard), record)]


def _write_shard(keyed, staging, plan):
  """Writes one shard's records, sorted by (row, first frame); returns its dataset.json entry."""
  (split, shard), records = keyed
  records = sorted(records, key=lambda r: (r[0], r[1]))
  name = shard_name(split, shard, plan["counts"][split])
  sha256 = tfrecords.write_file(os.path.join(staging, name), (r[4] for r in records))
  return {"split": split, "index": shard, "path": name, "num_records": len(records),
          "num_frames": sum(r[3] for r in records), "record_frames": [r[3] for r in records],
          "sha256": sha256}


def _plan(videos, rates, num_shards):
  error = first_error(videos, rates)
  if error:
    return {"error": error}
  shards, counts = plan_shards(videos, num_shards)
  return {"error": "", "shards": shards, "counts": counts}


def _summary(_, staging, plan, rates, videos, train, subjects, shards):
  """Writes what the launcher needs to finish (`SUMMARY_FILE` in the staging folder)."""
  summary = {"error": plan["error"], "fps": rates["fps"]}
  if not plan["error"]:
    # Each video's moments are merged into `train` and `subjects` by the pipeline.
    videos = [{k: v for k, v in video.items() if k != "moments"} for video in videos]
    summary.update(
        videos=sorted(videos, key=lambda v: v["row"]), shards=sorted(
            shards, key=lambda s: (s["split"], s["index"])),
        train=_moments_json(train), subjects={s: _moments_json(m) for s, m in subjects.items()})
  with filesystem.open(os.path.join(staging, SUMMARY_FILE), "w") as f:
    json.dump(summary, f)


def _moments_json(m):
  return None if m is None else {"count": m.count, "mean": m.mean.tolist(), "m2": m.m2.tolist()}


def build(pipeline, rows, split_of, staging, options, load, source_fps):
  """Adds the ingest transforms to `pipeline`; running it writes shards and the summary.

  `load(row, fps)` reads one video (ingest_lib.load_and_resample) and `source_fps(row)` gives
  its frame rate; both raise VideoFileError for bad input.
  """
  subject_split = {r["subject_id"]: split_of[r["video_id"]] for r in rows}
  indexed = pipeline | "Videos" >> beam.Create(list(enumerate(rows)), reshuffle=True)
  if options.fps:
    rates = pipeline | "GivenRate" >> beam.Create([{"fps": float(options.fps), "errors": []}])
  else:
    rates = (indexed
             | "SourceRates" >> beam.Map(_source_rate, source_fps)
             | "MostCommonRate" >> beam.CombineGlobally(MostCommonRateFn()))
  rates_side = beam.pvalue.AsSingleton(rates)
  read = indexed | "ReadVideos" >> beam.ParDo(
      ReadVideos(split_of, options.chunk_frames, load, logging.get_verbosity()),
      rates_side).with_outputs(ReadVideos.RECORDS, main="videos")
  videos = read.videos
  plan = beam.pvalue.AsSingleton(
      videos
      | "AllVideos" >> beam.combiners.ToList()
      | "PlanShards" >> beam.Map(_plan, rates_side, options.num_shards))
  shards = (read[ReadVideos.RECORDS]
            | "AssignShards" >> beam.FlatMap(_shard_key, plan)
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards" >> beam.Map(_write_shard, staging, plan))
  # Statistics only when the plan found no bad input (a video of another width cannot merge).
  subjects = (videos
              | "BySubject" >> beam.FlatMap(_subject_moments, plan)
              | "SubjectMoments" >> beam.CombinePerKey(MomentsCombineFn()))
  train = (subjects
           | "TrainSubjects" >> beam.Filter(lambda kv: subject_split[kv[0]] == "train")
           | "TrainContribution" >> beam.Map(
               lambda kv: moments_lib.training_contribution(options.normalize, kv[1]))
           | "TrainMoments" >> beam.CombineGlobally(MomentsCombineFn()))
  _ = (pipeline
       | "One" >> beam.Create([None])
       | "Summary" >> beam.Map(
           _summary, staging, plan, rates_side,
           beam.pvalue.AsList(videos),
           beam.pvalue.AsSingleton(train), beam.pvalue.AsDict(subjects),
           beam.pvalue.AsList(shards)))

