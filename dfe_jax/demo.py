"""The main job, end to end on the built-in synthetic corpus.

  python -m dfe_jax.demo --output_dir=runs/demo

synth -> ingest (subject normalisation: each subject's neutral face removed) -> train
configs/rvq.py:demo (and configs/continuous.py:demo, the probes' no-discretisation baseline) ->
tokenize -> export -> token recovery -> probe -> report, then `summary.md`. An interrupted job
resumes where it stopped (see `dfe_jax/main_job/stages.py`).
"""

import importlib.resources
import os

from absl import flags
from absl import logging
from ml_collections import config_flags

from dfe_jax import startup

# The configs ship with the package (dfe_jax.configs is the repository's configs/ folder).
_CONFIGS = importlib.resources.files("dfe_jax.configs")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/demo", "Where every stage writes.")
_RVQ = config_flags.DEFINE_config_file("rvq_config", f"{_CONFIGS / 'rvq.py'}:demo",
                                       "The tokenizer's training config.")
_CONTINUOUS = config_flags.DEFINE_config_file(
    "continuous_config", f"{_CONFIGS / 'continuous.py'}:demo",
    "The continuous baseline's training config.")
_PROBE = config_flags.DEFINE_config_file("probe_config", str(_CONFIGS / "probe.py"),
                                         "The probe config.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 48, "Subjects in the synthetic corpus.")
_VIDEO_SECONDS = flags.DEFINE_float("video_seconds", 60.0, "Seconds per synthetic video.")


def main(argv):
  del argv
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  import jax  # pylint: disable=g-import-not-at-top
  from dfe_jax.main_job import stages  # pylint: disable=g-import-not-at-top
  logging.info("demo: JAX on %d %s device(s)", jax.device_count(), jax.default_backend())
  try:
    stages.run_demo(_OUTPUT_DIR.value, _RVQ.value, _CONTINUOUS.value, _PROBE.value,
                    _NUM_SUBJECTS.value, _VIDEO_SECONDS.value)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    startup.fail("demo", e)
  with open(os.path.join(_OUTPUT_DIR.value, "summary.md")) as f:
    print(f.read())


def run():
  """Console-script entry point (`dfe-demo`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
