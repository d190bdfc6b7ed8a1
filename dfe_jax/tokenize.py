"""Tokenizes videos with a trained workdir: tokens.npz (+ tokens_index.csv) in DESIGN's format.

  python -m dfe_jax.tokenize --workdir=/tmp/dfe --data=data/synth/manifest.csv --output=/tmp/tok

`--data` is a manifest CSV (per-video files, resampled to the model's fps) or an ingest shard
folder (records reassembled per video). Long videos are encoded in chunks whose codes equal
whole-video encoding; see `dfe_jax/tokenizer/tokenize_lib.py`.
"""


from absl import flags
from absl import logging

from dfe_jax import startup
from dfe_jax.formats import outputs

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (checkpoints/, config.json, "
                               "dataset.json).", required=True)
_DATA = flags.DEFINE_string("data", None, "Manifest CSV or ingest shard folder.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Output folder for tokens.npz and "
                              "tokens_index.csv.", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Use the best checkpoint (by the config's best_metric).")
_LATENTS = flags.DEFINE_bool("latents", False, "Also write the continuous encoder outputs.")
_SPLITS = flags.DEFINE_list("splits", None, "Shard folder only: splits to tokenize (default all).")
_CHUNK_FRAMES = flags.DEFINE_integer("chunk_frames", 4096, "Frames per encoded chunk (plus "
                                     "receptive-field context on each side).")
_BATCH_FRAMES = flags.DEFINE_integer("batch_frames", 32768, "Frames per jitted batch.")
_MAX_STEPS_PER_FILE = flags.DEFINE_integer("max_steps_per_file", 1_000_000,
                                           "Latent steps per tokens file before splitting.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace tokens already in --output.")


def main(argv):
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.tokenizer import tokenize_lib  # pylint: disable=g-import-not-at-top
  from dfe_jax.tokenizer import trained_model  # pylint: disable=g-import-not-at-top
  del argv
  try:
    trained = trained_model.load(_WORKDIR.value, step=_STEP.value, best=_BEST.value)
    summary = tokenize_lib.tokenize_videos(
        trained, _DATA.value, _OUTPUT.value, latents=_LATENTS.value,
        chunk_frames=_CHUNK_FRAMES.value, batch_frames=_BATCH_FRAMES.value,
        max_steps_per_file=_MAX_STEPS_PER_FILE.value, splits=_SPLITS.value,
        overwrite=_OVERWRITE.value)
  except (outputs.OutputExistsError, FileNotFoundError, ValueError) as e:
    startup.fail("tokenize", e)
  logging.info("tokenize: done in %.1f s", summary["seconds"])
  print(f"tokenize: {summary['num_videos']} videos, {summary['num_frames']} frames, "
        f"{summary['num_steps']} steps -> {', '.join(summary['files'])} "
        f"({summary['frames_per_second']:.0f} frames/s, checkpoint step {trained.step})")


def run():
  """Console-script entry point (`dfe-tokenize`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
