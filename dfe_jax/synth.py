"""Writes the built-in synthetic corpus: per-video `.npz`, `manifest.csv`, `displays.npz`.

  python -m dfe_jax.synth --output_dir=data/synth [--space=arkit51] [--num_subjects=48]

The generative model is documented in `dfe_jax/synthetic/synth_lib.py`.
"""


from absl import flags

from dfe_jax import startup
from dfe_jax.formats import outputs

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the corpus.", required=True)
_SPACE = flags.DEFINE_enum("space", "flame53", ["flame53", "arkit51"], "Feature space.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 48, "Number of subjects.")
_VIDEOS_PER_SUBJECT = flags.DEFINE_integer("videos_per_subject", 3, "Videos per subject.")
_VIDEO_SECONDS = flags.DEFINE_float("video_seconds", 60.0, "Length of each video in seconds.")
_FPS = flags.DEFINE_float("fps", 25.0, "Frame rate.")
_NUM_DISPLAYS = flags.DEFINE_integer("num_displays", 16, "Ground-truth facial displays.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed; the corpus is a pure function of the flags.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1, "Processes generating videos.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing corpus.")


def main(argv):
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.synthetic import synth_lib  # pylint: disable=g-import-not-at-top
  del argv
  spec = synth_lib.CorpusSpec(
      space=_SPACE.value, num_subjects=_NUM_SUBJECTS.value,
      videos_per_subject=_VIDEOS_PER_SUBJECT.value, video_seconds=_VIDEO_SECONDS.value,
      fps=_FPS.value, num_displays=_NUM_DISPLAYS.value, seed=_SEED.value)
  try:
    synth_lib.write_corpus(spec, _OUTPUT_DIR.value, _OVERWRITE.value, _NUM_WORKERS.value)
  except (outputs.OutputExistsError, ValueError) as e:
    startup.fail("synth", e)


def run():
  """Console-script entry point (`dfe-synth`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
