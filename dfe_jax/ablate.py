"""Trains, tokenizes and scores display discovery for each tokenizer variant of configs/ablation.py.

  python -m dfe_jax.ablate --output_dir=runs/ablation [--variants=reference,additive] \
      [--seeds=0,1,2]

Makes (or reuses) the main job's synthetic corpus and shards under OUTPUT_DIR, then for each
variant x seed trains `configs/ablation.py:<variant>`, tokenizes the corpus and runs display
discovery; finished runs are skipped. Writes `ablation.md` (the table of docs/ablation.md) and
`ablation.json` (`dfe_jax/main_job/ablation.py`).
"""

import importlib

from absl import flags

from dfe_jax import startup

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/ablation", "Where every run writes.")
_VARIANTS = flags.DEFINE_list("variants", None, "Variants of configs/ablation.py to run, in "
                              "order (default: all).")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Training seeds.")
_SIZE = flags.DEFINE_enum("size", "demo", ["demo", "smoke"], "Model and run size: the main "
                          "job's (demo) or configs/rvq.py:smoke's (a check that it runs).")
_TOTAL_STEPS = flags.DEFINE_integer("total_steps", None, "Override every variant's steps.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 48, "Subjects in the synthetic corpus.")
_VIDEO_SECONDS = flags.DEFINE_float("video_seconds", 60.0, "Seconds per synthetic video.")


def main(argv):
  del argv
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.main_job import ablation  # pylint: disable=g-import-not-at-top
  configs = importlib.import_module("dfe_jax.configs.ablation")
  names = _VARIANTS.value or list(configs.VARIANTS)
  try:
    variants = [(name, describe(configs.VARIANTS.get(name, {})),
                 configs.get_config(f"{name},{_SIZE.value}")) for name in names]
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError as e:
    startup.fail("ablate", e)
  if _TOTAL_STEPS.value:
    for _, _, config in variants:
      config.total_steps = _TOTAL_STEPS.value
  try:
    ablation.run_ablation(_OUTPUT_DIR.value, variants, seeds, num_subjects=_NUM_SUBJECTS.value,
                          video_seconds=_VIDEO_SECONDS.value)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    startup.fail("ablate", e)
  with open(f"{_OUTPUT_DIR.value}/ablation.md") as f:
    print(f.read())


def describe(overrides):
  """The overrides as text: `key=value, ...` or "(configs/rvq.py:demo as is)"."""
  return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(configs/rvq.py:demo as is)"


def run():
  """Console-script entry point (`dfe-ablate`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
