"""The commands' start-up: instant `--help`, and configs that install with the package."""

import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import probe_fixtures

REPO = pathlib.Path(__file__).resolve().parent.parent
COMMANDS = ("synth", "extract", "ingest", "train", "tokenize", "export", "discover", "probe",
            "report", "demo", "ablate")
HEAVY = ("jax", "tensorflow", "flax", "optax", "orbax")


def _python(code, cwd=REPO, path=None):
  env = None
  if path is not None:
    import os  # pylint: disable=g-import-not-at-top
    env = {**os.environ, "PYTHONPATH": str(path)}
  return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                        timeout=120, env=env)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_loads_no_heavy_library(command):
  """`--help` parses flags only: JAX and TensorFlow load after it, in `main`."""
  done = _python(
      "import runpy, sys\n"
      f"sys.argv = ['{command}', '--help']\n"
      "try:\n"
      f"  runpy.run_module('dfe_jax.{command}', run_name='__main__')\n"
      "except SystemExit:\n"
      "  pass\n"
      f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
  assert done.returncode == 0, done.stderr
  assert "--output_dir" in done.stdout or "--workdir" in done.stdout or "--videos" in done.stdout \
      or "--config" in done.stdout, done.stdout[:500]
  assert done.stdout.strip().splitlines()[-1] == "HEAVY []", done.stdout[-300:]


def test_local_files_never_import_tensorflow(tmp_path):
  """The formats layer reads and writes local files without TensorFlow (gs:// alone loads it)."""
  done = _python(
      "import sys, numpy as np\n"
      "from dfe_jax.formats import outputs, video_files\n"
      f"path = '{tmp_path}/v.npz'\n"
      "outputs.save_npz(path, features=np.zeros((4, 53), np.float32), valid=np.ones(4, bool),\n"
      "                 fps=np.float32(25))\n"
      "video = video_files.read_video(path)\n"
      "assert video.features.shape == (4, 53), video.features.shape\n"
      "print('TF', 'tensorflow' in sys.modules)\n")
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip().splitlines()[-1] == "TF False"


def test_configs_ship_in_the_wheel(tmp_path):
  """A non-editable install carries configs/ as dfe_jax.configs, and the main job finds them."""
  build = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
       "-w", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
  assert build.returncode == 0, build.stderr[-2000:]
  wheel, = (tmp_path / "dist").glob("dfe_jax-*.whl")
  site = tmp_path / "site"
  with zipfile.ZipFile(wheel) as z:
    z.extractall(site)
  assert (site / "dfe_jax" / "configs" / "rvq.py").exists()
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  done = _python(
      "import sys\n"
      "from absl import flags\n"
      "from dfe_jax import demo\n"
      "flags.FLAGS(['demo'])\n"
      "print(demo._RVQ.value.total_steps, demo._CONTINUOUS.value.model.quantizer.kind,\n"
      "      demo._PROBE.value.tasks, demo.__file__)\n", cwd=elsewhere, path=site)
  assert done.returncode == 0, done.stderr[-2000:]
  steps, kind, tasks, where = done.stdout.split()
  assert where.startswith(str(site)), where
  assert (int(steps), kind, tasks) == (300, "none", "stress,depression,extraversion")


@pytest.mark.parametrize("flag,message", [
    ("--config.totl_steps=5", "--config.totl_steps: no such config field; did you mean "
                              "'total_steps'?"),
    ("--config=configs/nope.py", "--config=configs/nope.py: no such config file"),
    ("--config=README.md", "--config=README.md: SyntaxError"),
    ("--config=NOGET", "the config file defines no get_config()"),
])
def test_config_errors_are_one_line(flag, message, tmp_path):
  """A bad config or override: one line naming the flag, exit 1, no workdir written."""
  if "NOGET" in flag:
    (tmp_path / "noget.py").write_text("x = 1\n")
    flag = f"--config={tmp_path / 'noget.py'}"
  base = [] if flag.startswith("--config=") else ["--config=configs/rvq.py:smoke"]
  done = subprocess.run(
      [sys.executable, "-m", "dfe_jax.train", *base, flag, f"--workdir={tmp_path / 'run'}"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.returncode == 1
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("train: error: "), done.stderr[-1500:]
  assert message in lines[0]
  assert not (tmp_path / "run").exists()


def _one_line_error(command, *flags):
  """Runs a command that must fail; returns its single stderr line."""
  done = subprocess.run([sys.executable, "-m", f"dfe_jax.{command}", *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 1, (done.returncode, done.stderr[-1500:])
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), done.stderr[-1500:]
  return lines[0]


def test_missing_checkpoint_is_one_line(tmp_path):
  workdir = tmp_path / "run"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "config.json").write_text('{"config": {}}')
  (workdir / "dataset.json").write_text('{"format_version": 1, "num_features": 53}')
  line = _one_line_error("export", f"--workdir={workdir}", f"--output={tmp_path / 'm.npz'}")
  assert "no checkpoint" in line and str(workdir / "checkpoints") in line
  assert not (tmp_path / "m.npz").exists()


def test_random_bytes_npz_is_one_line_without_unpickling_advice(tmp_path):
  (tmp_path / "bad.npz").write_bytes(np.random.default_rng(0).bytes(4096))
  (tmp_path / "manifest.csv").write_text("video_id,subject_id,path\nv0,s0,bad.npz\n")
  line = _one_line_error("ingest", f"--manifest={tmp_path / 'manifest.csv'}",
                         f"--output_dir={tmp_path / 'shards'}", "--num_processes=1")
  assert "bad.npz: not a readable .npz file" in line
  assert "pickle" not in line.lower()
  assert not (tmp_path / "shards").exists() or not list((tmp_path / "shards").iterdir())


def test_manifest_without_labels_stops_before_reading_videos(tmp_path):
  """The labels are checked first: the videos here do not even exist."""
  (tmp_path / "manifest.csv").write_text(
      "video_id,subject_id,path\n" + "".join(f"v{i},s{i},missing{i}.npz\n" for i in range(4)))
  probe_fixtures.write_tokens(
      str(tmp_path / "tokens.npz"), [f"v{i}" for i in range(4)],
      [np.zeros((5, 2), np.int32)] * 4, [np.ones(5, bool)] * 4, codebook_size=8)
  line = _one_line_error("probe", "--config=configs/probe.py:smoke",
                         f"--config.tokens={tmp_path / 'tokens.npz'}",
                         f"--config.manifest={tmp_path / 'manifest.csv'}",
                         f"--output_dir={tmp_path / 'probe'}")
  assert "the manifest has no label columns" in line
  assert not (tmp_path / "probe" / "results.json").exists()
