"""Probe inputs: the manifest, its label columns, and which videos have tokens and feature files."""

import csv
import dataclasses
import os

import numpy as np

from dfe_jax.formats import dataset_info
from dfe_jax.formats import filesystem
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import normalization
from dfe_jax.formats import video_files
from dfe_jax.probing import featurize

ProbeInputError = featurize.ProbeInputError

RESERVED_COLUMNS = manifest_format.KNOWN_COLUMNS
MISSING_VALUES = ("", "nan", "na", "n/a", "none", "null")


@dataclasses.dataclass
class Manifest:
  """The manifest rows of the videos that are probed, and where their files are."""
  path: str
  video_ids: list
  subject_ids: np.ndarray
  rows: list  # dicts, one per video, with every column; `path` resolved by the reader
  columns: list

  def file_of(self, row_index):
    """The per-video feature file of row `row_index` ('' when the manifest gives none)."""
    return self.rows[row_index].get("path") or ""


def read_manifest(path):
  """The probe's view of a manifest, read by `formats.manifest` (ids checked; files not yet)."""
  rows = manifest_format.read(path, need_files=False)
  return Manifest(path, [r["video_id"] for r in rows], np.array([r["subject_id"] for r in rows]),
                  rows, list(rows[0]))


def merge_subject_labels(manifest, path):
  """Adds per-subject label columns from a CSV keyed by `subject_id` to the subject's videos."""
  try:
    f = open(path, newline="")
  except OSError as e:
    raise ProbeInputError(f"{path}: cannot read subject label table ({e.strerror})") from e
  with f:
    reader = csv.DictReader(f)
    has_key = "subject_id" in (reader.fieldnames or [])
    table = {row["subject_id"]: row for row in reader} if has_key else None
  if table is None:
    raise ProbeInputError(f"{path}: subject label table has no 'subject_id' column")
  new_columns = [c for c in reader.fieldnames if c != "subject_id"]
  for row in manifest.rows:
    for column in new_columns:
      row[column] = table.get(row["subject_id"], {}).get(column, "")
  manifest.columns += [c for c in new_columns if c not in manifest.columns]


def task_labels(manifest, column, declared_type):
  """Label values, the rows that have one, and the task type.

  The type is declared, or inferred: exactly two distinct values (or any text) make a
  classification task, more numeric values a regression task.
  """
  if column not in manifest.columns:
    labels = [c for c in manifest.columns if c not in RESERVED_COLUMNS]
    raise ProbeInputError(f"{manifest.path}: no label column '{column}' (" + (
        f"label columns: {', '.join(labels)})" if labels else "the manifest has no label columns)"))
  raw = [(r.get(column) or "").strip() for r in manifest.rows]
  present = np.array([v.lower() not in MISSING_VALUES for v in raw])
  values = [v for v, p in zip(raw, present) if p]
  try:
    numeric = np.array([float(v) for v in values], np.float64)
  except ValueError:
    numeric = None
  task_type = declared_type or ("regression" if numeric is not None and len(set(values)) > 2
                                else "classification")
  if task_type == "regression":
    if numeric is None:
      raise ProbeInputError(
          f"{manifest.path}: column '{column}' is declared regression but is not numeric")
    return numeric, present, task_type
  if numeric is not None and np.all(numeric == np.round(numeric)):
    return numeric.astype(np.int64), present, task_type
  return np.array(values), present, task_type


def load_videos(manifest, indices):
  """The per-video feature files named in `path` (`video_files.Video`s, fps always set)."""
  videos = []
  for i in indices:
    path = manifest.file_of(i)
    video = video_files.read_video(path)
    video.fps = video_files.frame_rate(path, video.fps, manifest.rows[i].get("fps"))
    videos.append(video)
  return videos


def read_dataset(path):
  """The tokenizer's `dataset.json` (normalisation statistics) and its videos' splits, from the
  `videos.csv` ingest wrote beside it: (stats, {video_id: split})."""
  folder = path if filesystem.isdir(path) else os.path.dirname(path)
  try:
    info = dataset_info.read(path)
    split_of = dataset_info.read_video_splits(folder)
  except (OSError, ValueError) as e:
    raise ProbeInputError(f"config.dataset={path}: not an ingest dataset.json with videos.csv "
                          f"beside it ({e})") from None
  if "normalization" not in info:
    raise ProbeInputError(f"config.dataset={path}: no normalisation statistics")
  return info["normalization"], split_of


def normalize_like_tokenizer(manifest, videos, stats):
  """The videos' features normalised as the tokenizer normalised them (per subject)."""
  by_subject = {}
  for i, row in enumerate(manifest.rows):
    by_subject.setdefault(row["subject_id"], []).append(i)
  for indices in by_subject.values():
    normalised, _ = normalization.normalize_subject_videos(
        stats, [videos[i].features for i in indices], [videos[i].valid for i in indices])
    for i, x in zip(indices, normalised):
      videos[i] = dataclasses.replace(videos[i], features=x)
  return videos


def match_tokens(manifest, tokens, allow_missing):
  """Keeps manifest videos that have tokens; for others stops, or if allowed drops and counts."""
  index = {v: i for i, v in enumerate(tokens.video_ids)}
  missing = [v for v in manifest.video_ids if v not in index]
  if missing and (len(missing) == len(manifest.video_ids) or not allow_missing):
    raise ProbeInputError(
        f"{manifest.path}: {len(missing)} of {len(manifest.video_ids)} video_id values are not in "
        f"{tokens.files[0]} (e.g. manifest '{missing[0]}' vs tokens '{tokens.video_ids[0]}')"
        + ("" if len(missing) == len(manifest.video_ids) else
           "; set config.allow_missing_videos=True to drop them"))
  keep = [i for i, v in enumerate(manifest.video_ids) if v in index]
  kept = Manifest(manifest.path, [manifest.video_ids[i] for i in keep], manifest.subject_ids[keep],
                  [manifest.rows[i] for i in keep], manifest.columns)
  return kept, [index[v] for v in kept.video_ids], len(missing)
