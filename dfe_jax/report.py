"""Writes the HTML report of a trained model: token dictionary, faces, usage, reconstructions.

  python -m dfe_jax.report --workdir=/tmp/dfe --output_dir=/tmp/dfe/report \
      [--tokens=/tmp/dfe/tokens/tokens.npz] [--manifest=manifest.csv] [--flame_model=flame.pkl]
"""

from absl import app
from absl import flags

from dfe_jax import startup
from dfe_jax.formats import outputs
from dfe_jax.formats import video_files

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Report folder (default: WORKDIR/report).")
_TOKENS = flags.DEFINE_string("tokens", None, "tokens.npz, its folder, or a glob of shards; "
                              "default: encode manifest videos here.")
_MANIFEST = flags.DEFINE_string("manifest", None, "manifest.csv of per-video files (default: "
                                "the one recorded in the workdir's dataset.json).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Ingest folder whose videos.csv gives the "
                                "splits (default: the config's data_dir).")
_FLAME_MODEL = flags.DEFINE_string("flame_model", None, "FLAME model (.pkl or .npz) to draw "
                                   "FLAME tokens as faces.")
_DISCOVERY = flags.DEFINE_string("discovery", None, "Folder of dfe-discover's discovery.json "
                                 "(synthetic corpus) to show display discovery.")
_PROBE = flags.DEFINE_string("probe", None, "Folder of dfe-probe's results.json to show the "
                             "probe table.")
_TOP_TOKENS = flags.DEFINE_integer("top_tokens", 48, "Most used tokens to draw.")
_MAX_VIDEOS = flags.DEFINE_integer("max_videos", 200, "Manifest videos to read at most.")
_HELDOUT = flags.DEFINE_integer("heldout_videos", 3, "Held-out videos to reconstruct.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_BEST = flags.DEFINE_bool("best", False, "Use the best checkpoint.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing report folder.")


def main(argv):
  """Parses flags and writes the report."""
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  from dfe_jax.reporting import report_lib  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  output_dir = _OUTPUT_DIR.value or outputs.join(_WORKDIR.value, "report")
  try:
    path = report_lib.write_report(
        _WORKDIR.value, output_dir, tokens=_TOKENS.value, manifest=_MANIFEST.value,
        flame_model=_FLAME_MODEL.value, data_dir=_DATA_DIR.value,
        discovery_dir=_DISCOVERY.value, probe_dir=_PROBE.value,
        options=report_lib.ReportOptions(
            top_tokens=_TOP_TOKENS.value, max_videos=_MAX_VIDEOS.value,
            heldout_videos=_HELDOUT.value, step=_STEP.value, best=_BEST.value,
            overwrite=_OVERWRITE.value))
  except (OSError, ValueError, video_files.VideoFileError) as e:
    startup.fail("report", e)
  print(f"report: {path}")


def run():
  """Console-script entry point (`dfe-report`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
