"""`dataset.json` and `videos.csv` (docs/formats.md, "Shards and dataset.json"): their one writer
and reader.

Ingest writes both beside the shards; training copies `dataset.json` into the workdir (both
through `write`). Everything else reads `dataset.json` through `read`, which stops on a file of
an unknown `format_version` with one line, and the videos' splits through `read_video_splits`.
"""

import csv
import io
import json
import os

from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs
from dfe_jax.formats import versioned_json

FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)


class DatasetInfoError(ValueError):
  """dataset.json is missing, unreadable or of an unknown version; the message names the file."""


class DatasetInfoNotFoundError(DatasetInfoError, FileNotFoundError):
  """There is no dataset.json where one was expected."""


SPEC = versioned_json.JsonFormat(
    file_name="dataset.json", kind="dataset", versions=READABLE_VERSIONS,
    remedy="re-ingest, or update dfe_jax", produced_by="python -m dfe_jax.ingest",
    error=DatasetInfoError, not_found_error=DatasetInfoNotFoundError)


def read(path):
  """The parsed `dataset.json` at `path` (or in the folder `path`)."""
  return versioned_json.read(path, SPEC)


def write(folder, info):
  """`dataset.json` in `folder`, atomically (a crash never leaves half a file)."""
  if info.get("format_version") != FORMAT_VERSION:
    raise DatasetInfoError(f"{folder}: refusing to write dataset.json of format_version "
                           f"{info.get('format_version')!r} (this dfe_jax writes {FORMAT_VERSION})")
  with outputs.atomic_open(os.path.join(folder, "dataset.json")) as f:
    json.dump(info, f, indent=1)


VIDEOS_CSV = "videos.csv"
_VIDEO_COLUMNS = ("video_id", "subject_id", "split", "source_fps", "num_frames",
                  "num_valid_frames", "num_nonfinite_frames")


def write_videos(data_dir, videos):
  """`videos.csv` in `data_dir`: one row per ingested video (dicts with `_VIDEO_COLUMNS`)."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=_VIDEO_COLUMNS, extrasaction="ignore")
  writer.writeheader()
  writer.writerows(videos)
  with outputs.atomic_open(os.path.join(data_dir, VIDEOS_CSV)) as f:
    f.write(buffer.getvalue())


def read_video_splits(data_dir):
  """{video_id: split} from the `videos.csv` that ingest wrote in `data_dir`."""
  path = os.path.join(data_dir, VIDEOS_CSV)
  if not filesystem.exists(path):
    raise DatasetInfoNotFoundError(f"{path}: no videos.csv; is {data_dir} an ingest output "
                                   "folder?")
  try:
    with filesystem.open(path) as f:
      return {r["video_id"]: r["split"] for r in csv.DictReader(f)}
  except (OSError, KeyError, csv.Error) as e:
    raise DatasetInfoError(f"{path}: not a readable videos.csv ({e})") from None
