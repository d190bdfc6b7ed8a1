"""The manifest CSV (docs/formats.md, "Manifest"): the one reader and the one writer.

Columns: `video_id`, `subject_id`, `path` (the per-video feature file, relative to the manifest)
and optionally `split` (train, val or test), `video_path`, `fps` and label columns. Ingest,
tokenize, the report and discovery read every column and need each `path` to exist; the probe
reads its labels and ids before any video and needs `path` only for the frame baselines
(`need_files=False`).
"""

import csv
import io
import os

from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs

ID_COLUMNS = ("video_id", "subject_id")
REQUIRED_COLUMNS = ID_COLUMNS + ("path",)
KNOWN_COLUMNS = REQUIRED_COLUMNS + ("split", "video_path", "fps")
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
  """A manifest is missing or malformed; the one-line message names the file (and line)."""


def _text(path):
  """The manifest's text (local or remote), a leading byte-order mark dropped."""
  if not filesystem.exists(path):
    raise ManifestError(f"{path}: manifest not found")
  try:
    with filesystem.open(path, "rb") as f:
      return f.read().decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise ManifestError(f"{path}: manifest is not UTF-8 text (byte {e.start})") from None
  except OSError as e:
    raise ManifestError(f"{path}: cannot read manifest ({e.strerror or e})") from None


def read(path, need_files=True):
  """The manifest's rows as dicts (one per video, every column), checked.

  Each non-empty `path` is resolved against the manifest's folder. Checked: the required columns
  are there, no row has more fields than the header, ids are non-empty and unique, `split` is
  one of SPLITS, given for every row or for none, and the same for all of a subject's videos;
  with `need_files`, every row has a `path` to an existing file.
  Errors give the line a row ends on (a quoted field may span lines).
  """
  try:
    return _read_rows(path, need_files)
  except csv.Error as e:
    raise ManifestError(f"{path}: not a readable CSV manifest ({e})") from None


def _read_rows(path, need_files):
  reader = csv.DictReader(io.StringIO(_text(path), newline=""))
  columns = reader.fieldnames
  if not columns:
    raise ManifestError(f"{path}: manifest is empty (no header line)")
  repeated = sorted({c for c in columns if columns.count(c) > 1})
  if repeated:
    raise ManifestError(f"{path}: column(s) {', '.join(repeated)} appear more than once")
  required = REQUIRED_COLUMNS if need_files else ID_COLUMNS
  missing = [c for c in required if c not in columns]
  if missing:
    raise ManifestError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
  base = os.path.dirname(path)
  rows, first_line = [], {}
  for row in reader:
    line = reader.line_num
    if any((v or "").strip() for v in row.pop(None, [])):
      raise ManifestError(f"{path}:{line}: more fields than the header's {len(columns)} "
                          "(an unquoted comma?)")
    for column in required:
      if not (row[column] or "").strip():
        raise ManifestError(f"{path}:{line}: empty {column}")
    vid = row["video_id"]
    if vid in first_line:
      raise ManifestError(f"{path}:{line}: duplicate video_id {vid!r} (first on line "
                          f"{first_line[vid]})")
    first_line[vid] = line
    split = (row.get("split") or "").strip()
    if "split" in row:
      row["split"] = split
    if split and split not in SPLITS:
      raise ManifestError(f"{path}:{line}: split {split!r} is not one of {', '.join(SPLITS)}")
    target = row.get("path") or ""
    if target and not filesystem.is_remote(target) and not os.path.isabs(target):
      row["path"] = target = os.path.join(base, target)
    if need_files and not filesystem.exists(target):
      raise ManifestError(f"{path}:{line}: video {vid!r} points at a missing file {target}")
    rows.append(row)
  if not rows:
    raise ManifestError(f"{path}: manifest has no rows")
  _check_splits(path, rows, first_line)
  return rows


def _check_splits(path, rows, line_of):
  """Splits are given for every video or none, and never put one subject on two sides."""
  split_of_subject = {}
  given = [bool((r.get("split") or "").strip()) for r in rows]
  for row, has_split in zip(rows, given):
    line = line_of[row["video_id"]]
    if any(given) and not has_split:
      raise ManifestError(f"{path}:{line}: video {row['video_id']!r} has no split, but other "
                          "videos have one (give all or none)")
    if not has_split:
      continue
    split = row["split"].strip()
    first = split_of_subject.setdefault(row["subject_id"], (split, line))
    if first[0] != split:
      raise ManifestError(f"{path}:{line}: subject {row['subject_id']!r} is in split {split!r} "
                          f"here and {first[0]!r} on line {first[1]}: a subject stays on one side")


def label_columns(rows):
  """The manifest's label columns: every column the format does not define."""
  return [c for c in rows[0] if c not in KNOWN_COLUMNS]


def write(path, rows, columns=None):
  """Writes `rows` (dicts; `path` relative to the manifest's folder) atomically as a manifest.

  `columns` defaults to the first row's keys; a missing value is written empty.
  """
  columns = list(columns or rows[0])
  missing = [c for c in REQUIRED_COLUMNS if c not in columns]
  if missing:
    raise ManifestError(f"{path}: a manifest needs column(s) {', '.join(missing)}")
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
  writer.writeheader()
  writer.writerows(rows)
  with outputs.atomic_open(path) as f:
    f.write(buffer.getvalue())
  return path
