"""Beam pipeline options for the data pipelines: this machine's cores unless the user says more.

`--beam_pipeline_options` takes Beam's own flags, `--runner=DataflowRunner --project=p ...`, or
TFDS's comma form, `runner=DataflowRunner,project=p`. Without a runner the pipeline runs on
Beam's DirectRunner with `num_workers` workers (0: one per core; 1: in this process).

Local workers are threads (`multi_threading`): the heavy calls (MediaPipe's C API, OpenCV
decoding, NumPy, file IO, hashing) release the GIL, and threads start at once and print nothing
of their own (`python -m benchmarks.data_prep` measures them against processes).
`--direct_running_mode=multi_processing` runs Beam SDK worker processes instead (about two
seconds of start-up each, and a few start-up lines).
"""

import contextlib
import json
import logging
import os
import shlex

# Start-up notices every local Beam worker logs as warnings: options meant for the runner, and no
# directory for registered schemas (none are used).
_QUIET_WORKER_LOGGERS = {"__main__": "ERROR", "apache_beam.options.pipeline_options": "ERROR"}
_DIRECT = ("DirectRunner", "direct", "SwitchingDirectRunner", "BundleBasedDirectRunner")


def parse(text):
  """The text of `--beam_pipeline_options` as a list of Beam flags."""
  text = (text or "").strip()
  if not text:
    return []
  if "--" not in text:
    return ["--" + part.strip() for part in text.split(",") if part.strip()]
  return shlex.split(text)


def _given(args):
  """{flag name: value} of `--name=value` flags."""
  given = {}
  for arg in args:
    name, _, value = arg.partition("=")
    if name.startswith("--"):
      given[name[2:]] = value
  return given


def direct_workers(args, num_workers):
  """DirectRunner processes for these flags: `--direct_num_workers` or `num_workers`, 0 = cores."""
  workers = int(_given(args).get("direct_num_workers") or num_workers or 0)
  return workers if workers > 0 else (os.cpu_count() or 1)


def is_direct(args):
  """Whether these flags run on this machine (no runner named, or the DirectRunner)."""
  return _given(args).get("runner", "DirectRunner") in _DIRECT


def pipeline_options(args=(), num_workers=0):
  """PipelineOptions for `args`, with DirectRunner defaults filled in when no runner is named.

  One worker runs in this process (`in_memory`); more run as threads (`multi_threading`).
  """
  args = list(args)
  given = _given(args)
  if "runner" not in given:
    args.append("--runner=DirectRunner")
  if is_direct(args):
    workers = direct_workers(args, num_workers)
    if "direct_num_workers" not in given:
      args.append(f"--direct_num_workers={workers}")
    if "direct_running_mode" not in given:
      args.append("--direct_running_mode=" + ("in_memory" if workers == 1 else
                                              "multi_threading"))
    if "default_sdk_harness_log_level" not in given:
      # Local worker processes print to this terminal: only their warnings and our progress.
      args.append("--default_sdk_harness_log_level=WARNING")
    if "sdk_harness_log_level_overrides" not in given:
      args.append("--sdk_harness_log_level_overrides=" + json.dumps(_QUIET_WORKER_LOGGERS))
  from apache_beam.options import pipeline_options as beam_options  # pylint: disable=g-import-not-at-top
  return beam_options.PipelineOptions(args)


def runner_name(args):
  """The runner these flags choose, for logs and provenance."""
  return _given(args).get("runner", "DirectRunner")


class _BeamImportNotice(logging.Filter):
  """Drops the warning Beam logs at import on machines without Google's BigQuery client."""

  def filter(self, record):
    return "apitools not found" not in record.getMessage()


@contextlib.contextmanager
def quiet_beam():
  """While it lasts, Beam logs warnings and errors only (its INFO lines are not our progress),
  and not its import notice about BigQuery; the loggers are restored afterwards."""
  beam_logger, root = logging.getLogger("apache_beam"), logging.getLogger()
  level, notice = beam_logger.level, _BeamImportNotice()
  beam_logger.setLevel(max(level, logging.WARNING))
  root.addFilter(notice)
  try:
    yield
  finally:
    beam_logger.setLevel(level)
    root.removeFilter(notice)
