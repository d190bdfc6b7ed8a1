"""Ingests per-video expression files into TFRecord shards and `dataset.json` (a Beam pipeline).

  python -m dfe_jax.ingest --manifest=data/synth/manifest.csv --output_dir=data/shards

This machine's cores run it (Beam's DirectRunner); a cluster runs the same pipeline through
Beam's options, e.g. `--beam_pipeline_options="--runner=DataflowRunner --project=P ..."`
(launch/dataflow_ingest.sh).
"""

import logging as std_logging
import sys

from absl import flags

from dfe_jax import startup
from dfe_jax.formats import normalization

_MANIFEST = flags.DEFINE_string("manifest", None, "Manifest CSV (video_id, subject_id, path, ...).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where shards and dataset.json go.",
                                  required=True)
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 4, "Shard files per split (fewer when a split "
                                   "has fewer records).")
_CHUNK_FRAMES = flags.DEFINE_integer("chunk_frames", 4096, "Longest record; longer videos are cut.")
_FPS = flags.DEFINE_float("fps", None, "Target frame rate (default: the most common source rate).")
_NORMALIZE = flags.DEFINE_enum("normalize", "global", list(normalization.MODES),
                               "global z-score, or subject centring.")
_VAL_FRACTION = flags.DEFINE_float("val_fraction", 0.1, "Fraction of subjects for validation.")
_TEST_FRACTION = flags.DEFINE_float("test_fraction", 0.1, "Fraction of subjects for test.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the subject split.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", 0, "Local Beam workers (DirectRunner processes): 0 = one per core, "
    "1 = in this process.", lower_bound=0)
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_pipeline_options", "", "Beam pipeline options, as Beam's flags "
    "(\"--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp\") or TFDS's "
    "comma form "
    "(\"runner=DataflowRunner,project=P\"); they win over --num_processes.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing dataset.")
# Deprecated (one release): the home-made multi-machine path, replaced by Beam's runners.
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1, "Deprecated: use --beam_pipeline_options.")
_WORKER_INDEX = flags.DEFINE_integer("worker_index", 0, "Deprecated: use --beam_pipeline_options.")
_MERGE = flags.DEFINE_bool("merge", False, "Deprecated: use --beam_pipeline_options.")


def _deprecated_worker_flags():
  """One line for the old multi-machine flags; True when this call has nothing left to do.

  Worker 0 runs the whole pipeline; other workers and `--merge` have nothing to add, so an old
  N-machine script still ends with one complete dataset.
  """
  if _NUM_WORKERS.value <= 1 and not _MERGE.value and not _WORKER_INDEX.value:
    return False
  print("ingest: --num_workers/--worker_index/--merge are deprecated and will be removed; one "
        "ingest runs on every core here, or on a cluster with --beam_pipeline_options="
        "\"--runner=DataflowRunner ...\" (README, launch/dataflow_ingest.sh)", file=sys.stderr)
  return _MERGE.value or _WORKER_INDEX.value > 0


def main(argv):
  del argv
  if _deprecated_worker_flags():
    return
  # Beam's own lines (and its local workers' start-up warnings) drown the progress lines.
  std_logging.getLogger("apache_beam").setLevel(std_logging.ERROR)
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.data import beam_options  # pylint: disable=g-import-not-at-top
  from dfe_jax.data import ingest_lib  # pylint: disable=g-import-not-at-top
  options = ingest_lib.IngestOptions(
      num_shards=_NUM_SHARDS.value, chunk_frames=_CHUNK_FRAMES.value, fps=_FPS.value,
      normalize=_NORMALIZE.value, val_fraction=_VAL_FRACTION.value,
      test_fraction=_TEST_FRACTION.value, seed=_SEED.value, num_processes=_NUM_PROCESSES.value,
      overwrite=_OVERWRITE.value, beam_options=tuple(beam_options.parse(_BEAM_OPTIONS.value)))
  try:
    if not _MANIFEST.value:
      raise ingest_lib.IngestError("--manifest is required")
    info = ingest_lib.ingest(_MANIFEST.value, _OUTPUT_DIR.value, options)
    print(ingest_lib.summary_line(info))
  except ValueError as e:
    startup.fail("ingest", e)


def run():
  """Console-script entry point (`dfe-ingest`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
