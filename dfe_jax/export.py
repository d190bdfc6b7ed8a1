"""Exports a trained workdir to `model.npz` + `model.json` for the NumPy-only tokenizer.

  python -m dfe_jax.export --workdir=/tmp/dfe --output=/tmp/dfe/model.npz

Then, on any machine with NumPy: `dfe_jax/tokenizer/numpy_tokenizer.py` (one file) tokenizes and decodes.
"""


from absl import flags

from dfe_jax import startup
from dfe_jax.formats import outputs

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Path of the model.npz to write (model.json is "
                              "written beside it).", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Export the best checkpoint.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing export.")


def main(argv):
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.tokenizer import export_lib  # pylint: disable=g-import-not-at-top
  from dfe_jax.tokenizer import trained_model  # pylint: disable=g-import-not-at-top
  del argv
  try:
    trained = trained_model.load(_WORKDIR.value, step=_STEP.value, best=_BEST.value)
    sidecar = export_lib.export(trained, _OUTPUT.value, overwrite=_OVERWRITE.value)
  except (outputs.OutputExistsError, FileNotFoundError, ValueError) as e:
    startup.fail("export", e)
  print(f"export: step {sidecar['step']} -> {_OUTPUT.value} ({len(sidecar['arrays'])} arrays)")


def run():
  """Console-script entry point (`dfe-export`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
