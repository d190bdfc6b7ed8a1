"""Probe results (docs/formats.md, "Probe results"): the one writer and the one reader.

A results folder holds `results.json`: `format_version`, `tasks` (per task: every
representation's metrics with folds and paired comparisons), `metrics` (`probe/<task>/<rep>/
<metric>` -> mean), `protocol`, `data` (counts, input sha256) and `provenance` (config, seeds,
versions); and `results.md`, the same numbers as a table. Files written before versions were
recorded have no `format_version` and read as version 1.
"""

import json
import math
import os

import numpy as np

from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs
from dfe_jax.formats import versioned_json

FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
REQUIRED_KEYS = ("tasks", "metrics", "data", "provenance")


class ProbeResultsError(ValueError):
  """results.json is missing, unreadable, malformed or of an unknown version; names the file."""


class ProbeResultsNotFoundError(ProbeResultsError, FileNotFoundError):
  """There is no results.json where one was expected."""


SPEC = versioned_json.JsonFormat(
    file_name=RESULTS_JSON, kind="probe results", versions=READABLE_VERSIONS,
    remedy="re-run the probe, or update dfe_jax", produced_by="python -m dfe_jax.probe",
    error=ProbeResultsError, not_found_error=ProbeResultsNotFoundError, unversioned=1,
    required_keys=REQUIRED_KEYS)


def paths(folder):
  """(results.json, results.md) in `folder`."""
  return os.path.join(folder, RESULTS_JSON), os.path.join(folder, RESULTS_MD)


def _json_safe(value):
  """NaN and infinities become null and NumPy scalars plain numbers, so the JSON is strict."""
  if isinstance(value, dict):
    return {str(k): _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


def write(folder, results, markdown):
  """Writes `results.json` (`results` with `format_version`) and `results.md` (`markdown`) into
  `folder`, each whole or not at all; returns their paths."""
  json_path, md_path = paths(folder)
  filesystem.makedirs(folder)
  document = _json_safe({"format_version": FORMAT_VERSION, **results})
  with outputs.atomic_open(json_path) as f:
    f.write(json.dumps(document, indent=1) + "\n")
  with outputs.atomic_open(md_path) as f:
    f.write(markdown)
  return json_path, md_path


def read(path):
  """The parsed `results.json` at `path` (or in the folder `path`), version checked."""
  return versioned_json.read(path, SPEC)


def read_table(folder):
  """The text of `results.md` in `folder` (the table the probe printed)."""
  path = paths(folder)[1]
  if not filesystem.exists(path):
    raise ProbeResultsNotFoundError(f"{path}: no probe results table; run `python -m "
                                    "dfe_jax.probe` first")
  with filesystem.open(path) as f:
    return f.read()
