"""Linear probes of DFE tokens against baselines (`python -m dfe_jax.probe --config=...`)."""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from dfe_jax import probe_cv
from dfe_jax import probe_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Probe config file (configs/probe.py).",
                                          lock_config=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for results.json and results.md.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing results in --output_dir.")
flags.mark_flags_as_required(["config", "output_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    results = probe_lib.run_probes(_CONFIG.value, _OUTPUT_DIR.value, overwrite=_OVERWRITE.value)
  except (probe_lib.ProbeInputError, probe_cv.ProbeFoldError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  for name, value in results["metrics"].items():
    print(f"{name} = {value:.4f}" if value == value else f"{name} = n/a")


def run():
  """Console-script entry point (`dfe-probe`)."""
  app.run(main)


if __name__ == "__main__":
  run()
