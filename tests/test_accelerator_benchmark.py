"""benchmarks.accelerator --quick: the CPU smoke of the benchmark a GPU or TPU run uses."""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_quick_run_writes_every_row_without_tensorflow(tmp_path):
  code = ("import runpy, sys\n"
          f"sys.argv = ['accelerator', '--quick', '--output_dir={tmp_path}']\n"
          "try:\n"
          "  runpy.run_module('benchmarks.accelerator', run_name='__main__')\n"
          "except SystemExit:\n"
          "  pass\n"
          "print('TENSORFLOW', 'tensorflow' in sys.modules)\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip().splitlines()[-1] == "TENSORFLOW False"
  rows = [json.loads(l) for l in open(tmp_path / "accelerator.jsonl")]
  assert [r["kind"] for r in rows] == ["gemm_peak", "train_step", "tokenize"]
  step = rows[1]
  assert (step["batch"], step["dtype"]) == (256, "float32")
  assert step["frames_per_second"] > 0 and step["share_of_f32_gemm_peak"] > 0
  assert rows[2]["frames_per_second"] > step["frames_per_second"]  # Encoding alone is cheaper.
