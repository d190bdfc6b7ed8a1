"""Ingests per-video expression files into TFRecord shards and `dataset.json`.

  python -m dfe_jax.ingest --manifest=data/synth/manifest.csv --output_dir=data/shards

Many machines: run with `--num_workers=N --worker_index=i --fps=25` on each (disjoint
subjects, disjoint shard files), then once `--merge --num_workers=N` to write dataset.json.
"""


from absl import flags

from dfe_jax import startup
from dfe_jax.formats import normalization

_MANIFEST = flags.DEFINE_string("manifest", None, "Manifest CSV (video_id, subject_id, path, ...).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where shards and dataset.json go.",
                                  required=True)
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 4, "Shard files per split (per worker).")
_CHUNK_FRAMES = flags.DEFINE_integer("chunk_frames", 4096, "Longest record; longer videos are cut.")
_FPS = flags.DEFINE_float("fps", None, "Target frame rate (default: the most common source rate).")
_NORMALIZE = flags.DEFINE_enum("normalize", "global", list(normalization.MODES),
                               "global z-score, or subject centring.")
_VAL_FRACTION = flags.DEFINE_float("val_fraction", 0.1, "Fraction of subjects for validation.")
_TEST_FRACTION = flags.DEFINE_float("test_fraction", 0.1, "Fraction of subjects for test.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the subject split.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1, "Machines writing disjoint shards.")
_WORKER_INDEX = flags.DEFINE_integer("worker_index", 0, "This machine's index.")
_MERGE = flags.DEFINE_bool("merge", False, "Merge the workers' summaries into dataset.json.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 2, "Local processes reading videos.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing dataset.")


def main(argv):
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.data import ingest_lib  # pylint: disable=g-import-not-at-top
  del argv
  options = ingest_lib.IngestOptions(
      num_shards=_NUM_SHARDS.value, chunk_frames=_CHUNK_FRAMES.value, fps=_FPS.value,
      normalize=_NORMALIZE.value, val_fraction=_VAL_FRACTION.value,
      test_fraction=_TEST_FRACTION.value, seed=_SEED.value, num_workers=_NUM_WORKERS.value,
      worker_index=_WORKER_INDEX.value, num_processes=_NUM_PROCESSES.value,
      overwrite=_OVERWRITE.value)
  try:
    if _MERGE.value:
      info = ingest_lib.merge_workers(_OUTPUT_DIR.value, options.normalize, options.num_workers)
      print(ingest_lib.summary_line(info))
    elif not _MANIFEST.value:
      raise ingest_lib.InputError("--manifest is required (or --merge)")
    elif options.num_workers > 1:
      print(ingest_lib.ingest_worker(_MANIFEST.value, _OUTPUT_DIR.value, options))
    else:
      info = ingest_lib.ingest(_MANIFEST.value, _OUTPUT_DIR.value, options)
      print(ingest_lib.summary_line(info))
  except (ingest_lib.InputError, ValueError) as e:
    startup.fail("ingest", e)


def run():
  """Console-script entry point (`dfe-ingest`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
