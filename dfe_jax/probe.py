"""Linear probes of DFE tokens against baselines (`python -m dfe_jax.probe --config=...`)."""


from absl import app
from absl import flags
from ml_collections import config_flags

from dfe_jax import startup

_CONFIG = config_flags.DEFINE_config_file("config", None, "Probe config file (configs/probe.py).",
                                          lock_config=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for results.json and results.md.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing results in --output_dir.")
flags.mark_flags_as_required(["config", "output_dir"])


def main(argv):
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.formats import manifest  # pylint: disable=g-import-not-at-top
  from dfe_jax.probing import cross_validation  # pylint: disable=g-import-not-at-top
  from dfe_jax.probing import probe_lib  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    results = probe_lib.run_probes(_CONFIG.value, _OUTPUT_DIR.value, overwrite=_OVERWRITE.value)
  except (probe_lib.ProbeInputError, manifest.ManifestError, cross_validation.ProbeFoldError,
          FileExistsError) as e:
    startup.fail("probe", e)
  for name, value in results["metrics"].items():
    print(f"{name} = {value:.4f}" if value == value else f"{name} = n/a")


def run():
  """Console-script entry point (`dfe-probe`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
