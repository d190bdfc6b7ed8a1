"""Scores a tokenizer's display discovery on the synthetic corpus against classical baselines.

  python -m dfe_jax.discover --workdir=runs/demo/train --tokens=runs/demo/tokens \
      --manifest=runs/demo/corpus/manifest.csv --output_dir=runs/demo/discovery

Writes `discovery.json` and `discovery.md`: dictionary recovery of the tokens, k-means, residual
k-means, PCA, NMF, sparse dictionary learning and FastICA (each beside its random-frame null),
and step-level recovery on held-out subjects (`dfe_jax/synthetic/display_discovery.py`).
"""

import os

from absl import flags

from dfe_jax import startup

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir.", required=True)
_TOKENS = flags.DEFINE_string("tokens", None, "Tokens of the synthetic corpus (tokens.npz or "
                              "its folder).", required=True)
_MANIFEST = flags.DEFINE_string("manifest", None, "The synthetic corpus's manifest.csv "
                                "(displays.npz beside it).", required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Ingest folder whose videos.csv gives the "
                                "splits (default: the config's data_dir).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for discovery.json and "
                                  "discovery.md (default: WORKDIR/discovery).")
_THRESHOLD = flags.DEFINE_float("threshold", 0.25, "Mean activation over a latent step above "
                                "which a display counts as active.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the baselines and nulls.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing results.")


def main(argv):
  del argv
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.formats import dataset_info  # pylint: disable=g-import-not-at-top
  from dfe_jax.formats import filesystem  # pylint: disable=g-import-not-at-top
  from dfe_jax.synthetic import display_discovery  # pylint: disable=g-import-not-at-top
  from dfe_jax.tokenizer import trained_model  # pylint: disable=g-import-not-at-top
  output_dir = _OUTPUT_DIR.value or os.path.join(_WORKDIR.value, "discovery")
  if filesystem.exists(os.path.join(output_dir, "discovery.json")) and not _OVERWRITE.value:
    startup.fail("discover", f"{output_dir}/discovery.json: already exists; pass --overwrite")
  try:
    trained = trained_model.load(_WORKDIR.value)
    split_of = dataset_info.read_video_splits(_DATA_DIR.value or trained.config.data_dir)
    result = display_discovery.evaluate(trained, _TOKENS.value, _MANIFEST.value, split_of,
                                        threshold=_THRESHOLD.value, seed=_SEED.value)
    display_discovery.write(result, output_dir)
  except (ValueError, FileNotFoundError) as e:
    startup.fail("discover", e)
  print(display_discovery.markdown(result))


def run():
  """Console-script entry point (`dfe-discover`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
