"""Exports a trained workdir to `model.npz` + `model.json` for the NumPy-only tokenizer.

  python -m dfe_jax.export --workdir=/tmp/dfe --output=/tmp/dfe/model.npz

Then, on any machine with NumPy: `dfe_jax/numpy_tokenizer.py` (one file) tokenizes and decodes.
"""

import sys

from absl import app
from absl import flags

from dfe_jax import export_lib
from dfe_jax import outputs
from dfe_jax import trained_model

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Path of the model.npz to write (model.json is "
                              "written beside it).", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Export the best checkpoint.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing export.")


def main(argv):
  del argv
  try:
    trained = trained_model.load(_WORKDIR.value, step=_STEP.value, best=_BEST.value)
    sidecar = export_lib.export(trained, _OUTPUT.value, overwrite=_OVERWRITE.value)
  except (outputs.OutputExistsError, FileNotFoundError, ValueError) as e:
    sys.exit(f"export: error: {e}")
  print(f"export: step {sidecar['step']} -> {_OUTPUT.value} ({len(sidecar['arrays'])} arrays)")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
