"""Tokenization frames/s: JAX path vs NumPy path vs the PyTorch reference, alternating.

  python -m benchmarks.tokenize_speed [--pairs=5] [--torch_python=/tmp/venv-torch/bin/python]

The reference configuration (configs/rvq.py: width 256, 4x downsampling, dilations (9,3,1),
code_dim 128, 6 levels of a shared 512-code codebook) with random weights encodes 32 videos of
1,024 frames (encoder + RVQ, as ../shared/bench/ref_torch/ times it), through
`chunked_encoder.ChunkedEncoder` (JAX) and `numpy_tokenizer.NumpyTokenizer` (NumPy). When a torch
interpreter with the reference's packages exists (`../shared/bench/ref_torch/run.sh` makes
`venv-torch` in the temp folder), the reference model runs in a worker process and the script
alternates JAX, torch and NumPy rounds, reporting the median JAX/torch and JAX/NumPy ratios
over the rounds, and the cores other processes kept busy during this process's rounds. GEMM
GFLOP/s (2048^2 fp32 through XLA) before and after gives the fraction of peak. Prints one JSON
line last.
"""

import json
import os
import statistics
import subprocess
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from benchmarks import contention
from benchmarks import peak
from benchmarks import reference

from dfe_jax import models
from dfe_jax.formats import feature_spaces
from dfe_jax.tokenizer import chunked_encoder
from dfe_jax.tokenizer import export_lib
from dfe_jax.tokenizer import numpy_tokenizer
from dfe_jax.tokenizer import trained_model

_PAIRS = flags.DEFINE_integer("pairs", 5, "Alternating JAX / torch rounds.")
_REPS = flags.DEFINE_integer("reps", 5, "Timed calls per round (after one warm-up).")
_NUM_VIDEOS = flags.DEFINE_integer("num_videos", 32, "Videos per call.")
_VIDEO_FRAMES = flags.DEFINE_integer("video_frames", 1024, "Frames per video.")
_TORCH_PYTHON = flags.DEFINE_string(
    "torch_python", os.path.join(tempfile.gettempdir(), "venv-torch", "bin", "python"),
    "Interpreter with torch + vector-quantize-pytorch ('' to skip the reference).")

TOKENIZE_FLOPS_PER_FRAME = 1_900_032  # ref_torch README: encoder convs + RVQ distances.

# The reference worker: builds the model, runs one training-mode forward so k-means init has
# happened (as in bench.py), then answers each stdin line `reps` with one JSON timing line.
_TORCH_WORKER = """
import json, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from model import RVQVAE
torch.set_num_threads(2)
torch.manual_seed(0)
model = RVQVAE(shared_codebook=True)
with torch.no_grad():
  model(torch.randn(256, 64, 53))
model.eval()
x = torch.randn(int(sys.argv[2]), int(sys.argv[3]), 53)
model.tokenize(x)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
  reps = int(line)
  t0 = time.perf_counter()
  for _ in range(reps):
    model.tokenize(x)
  print(json.dumps({"seconds": (time.perf_counter() - t0) / reps}), flush=True)
"""


def reference_model(seed=0):
  """The reference configuration with random weights, as a TrainedModel."""
  config = reference.config()
  names = list(feature_spaces.FLAME53)
  model = models.get_model(config.model)
  variables = model.init({"params": jax.random.PRNGKey(seed)}, jnp.zeros((1, 64, len(names))),
                         jnp.ones((1, 64), bool))
  info = {"num_features": len(names), "feature_names": names, "fps": 25.0,
          "normalization": {"mode": "global", "mean": [0.0] * len(names),
                            "std": [1.0] * len(names)}}
  return trained_model.TrainedModel(ml_collections.ConfigDict(config.to_dict()), info, model,
                                    variables, 0)


def time_calls(fn, reps):
  """(seconds per call, other cores busy meanwhile): one warm-up call, then the mean of `reps`.

  The torch worker sleeps during these rounds, so it does not count as another process here.
  """
  fn()
  before = contention.cpu_snapshot()
  for _ in range(reps):
    fn()
  after = contention.cpu_snapshot()
  return (after[0] - before[0]) / reps, contention.other_cores(before, after)


def start_torch_worker(python, num_videos, video_frames):
  """The reference worker process, or None when its interpreter is missing."""
  if not python or not os.path.exists(python) or not os.path.isdir(reference.REF_DIR):
    return None
  worker = subprocess.Popen([python, "-c", _TORCH_WORKER, reference.REF_DIR, str(num_videos),
                             str(video_frames)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
  json.loads(worker.stdout.readline())
  return worker


def torch_seconds(worker, reps):
  worker.stdin.write(f"{reps}\n")
  worker.stdin.flush()
  return json.loads(worker.stdout.readline())["seconds"]


def main(argv):
  del argv
  trained = reference_model()
  frames = _NUM_VIDEOS.value * _VIDEO_FRAMES.value
  rng = np.random.default_rng(0)
  videos = [(rng.standard_normal((_VIDEO_FRAMES.value, 53)).astype(np.float32),
             np.ones(_VIDEO_FRAMES.value, bool)) for _ in range(_NUM_VIDEOS.value)]
  encoder = chunked_encoder.ChunkedEncoder(trained, chunk_frames=4096, batch_frames=frames)
  tok = numpy_tokenizer.NumpyTokenizer({k: np.asarray(v) for k, v in
                                        export_lib.export_arrays(trained).items()})
  jax_run = lambda: encoder.encode(videos)
  numpy_run = lambda: tok.encode_many(videos, batch_frames=frames)

  # Agreement at the reference size: codes equal except near-ties (counted, not asserted here).
  jax_codes = np.concatenate([r[0] for r in jax_run()])
  numpy_codes = np.concatenate([r["codes"] for r in numpy_run()])
  differing_steps = int((jax_codes != numpy_codes).any(1).sum())

  gemm_pre = peak.gemm_gflops()
  worker = start_torch_worker(_TORCH_PYTHON.value, _NUM_VIDEOS.value, _VIDEO_FRAMES.value)
  jax_fps, torch_fps, numpy_fps, ratios, numpy_ratios, busy = [], [], [], [], [], []
  try:
    for pair in range(_PAIRS.value):
      seconds, others = time_calls(jax_run, _REPS.value)
      jax_fps.append(frames / seconds)
      busy.append(others)
      if worker is not None:
        torch_fps.append(frames / torch_seconds(worker, _REPS.value))
        ratios.append(jax_fps[-1] / torch_fps[-1])
      seconds, others = time_calls(numpy_run, max(1, _REPS.value // 2))
      numpy_fps.append(frames / seconds)
      busy.append(others)
      numpy_ratios.append(jax_fps[-1] / numpy_fps[-1])
      print(f"round {pair}: jax {jax_fps[-1]:,.0f} frames/s"
            + (f", torch {torch_fps[-1]:,.0f} frames/s (jax/torch {ratios[-1]:.2f})"
               if worker is not None else "")
            + f", numpy {numpy_fps[-1]:,.0f} frames/s (jax/numpy {numpy_ratios[-1]:.2f}); "
            f"other processes {max(busy[-2:]):.2f} cores", flush=True)
  finally:
    if worker is not None:
      worker.stdin.close()
      worker.wait()
  gemm_post = peak.gemm_gflops()
  gemm = 0.5 * (gemm_pre + gemm_post)
  jax_median = statistics.median(jax_fps)
  numpy_median = statistics.median(numpy_fps)
  result = {
      "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      "jax": jax.__version__, "numpy": np.__version__,
      "videos": _NUM_VIDEOS.value, "video_frames": _VIDEO_FRAMES.value,
      "jax_frames_per_s": jax_median, "jax_frames_per_s_all": jax_fps,
      "numpy_frames_per_s": numpy_median, "numpy_frames_per_s_all": numpy_fps,
      "jax_over_numpy_median": statistics.median(numpy_ratios),
      "torch_frames_per_s": statistics.median(torch_fps) if torch_fps else None,
      "torch_frames_per_s_all": torch_fps,
      "jax_over_torch_median": statistics.median(ratios) if ratios else None,
      "jax_over_torch_all": ratios,
      "gemm_gflops_pre": gemm_pre, "gemm_gflops_post": gemm_post,
      "jax_fraction_of_gemm_peak": jax_median * TOKENIZE_FLOPS_PER_FRAME / 1e9 / gemm,
      "numpy_fraction_of_gemm_peak": numpy_median * TOKENIZE_FLOPS_PER_FRAME / 1e9 / gemm,
      "other_cores_max": max(busy),
      "numpy_vs_jax_differing_steps": differing_steps, "steps": int(len(jax_codes)),
  }
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
