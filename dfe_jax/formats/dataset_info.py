"""`dataset.json` (docs/formats.md, "Shards and dataset.json"): the one reader, version checked.

Ingest writes it beside the shards; training copies it into the workdir. Everything else reads
it through `read`, which stops on a file of an unknown `format_version` with one line.
"""

import json
import os

from dfe_jax.formats import filesystem

FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)


class DatasetInfoError(ValueError):
  """dataset.json is missing, unreadable or of an unknown version; the message names the file."""


class DatasetInfoNotFoundError(DatasetInfoError, FileNotFoundError):
  """There is no dataset.json where one was expected."""


def read(path):
  """The parsed `dataset.json` at `path` (or in the folder `path`)."""
  if filesystem.isdir(path):
    path = os.path.join(path, "dataset.json")
  if not filesystem.exists(path):
    raise DatasetInfoNotFoundError(f"{path}: no dataset.json; run `python -m dfe_jax.ingest` "
                                   "first")
  try:
    with filesystem.open(path) as f:
      info = json.load(f)
  except (OSError, ValueError) as e:
    raise DatasetInfoError(f"{path}: not a readable dataset.json ({e})") from None
  version = info.get("format_version") if isinstance(info, dict) else None
  if version not in READABLE_VERSIONS:
    raise DatasetInfoError(f"{path}: dataset format_version {version}; this dfe_jax reads "
                           f"{', '.join(map(str, READABLE_VERSIONS))} (re-ingest, or update "
                           "dfe_jax)")
  return info
