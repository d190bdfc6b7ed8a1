"""Train-step and tokenize speed on whatever backend JAX finds (GPU, TPU or CPU), row by row.

  python -m benchmarks.accelerator --output_dir=/tmp/accel            # GPU/TPU: the full grid
  python -m benchmarks.accelerator --quick                            # CPU: batch 256, float32

For each global batch size and compute dtype it times the reference architecture's jitted train
step (`configs/rvq.py`'s model, the twin of ../shared/bench/ref_torch/, on random batches of the
real shapes: no TensorFlow needed) and writes one JSON row at a time, to stdout and with
`--output_dir` to `accelerator.jsonl`, so a run cut short keeps what it measured: frames/s,
TFLOP/s in the FLOPs the reference counts, the share of a bf16 and an f32 GEMM peak measured in
the same run, peak device memory. A `tokenize` row times encoder + quantizer. Where PyTorch sees
a GPU and the reference's folder is at `--reference_dir` (copy ../shared/bench/ref_torch beside
the checkout on a machine without ../shared), the PyTorch reference runs on the same GPU in
alternation with JAX (fp32, and bf16 autocast), and each JAX row carries the ratio.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import jitted_step
from benchmarks import reference
from dfe_jax import models

_QUICK = flags.DEFINE_bool("quick", False, "CPU smoke: batch 256, float32, a few steps.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["256", "1024", "4096"], "Global batches.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes of the model.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating JAX / PyTorch rounds; the median counts.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "", "Also append rows to accelerator.jsonl here.")
_REFERENCE_DIR = flags.DEFINE_string("reference_dir", reference.REF_DIR,
                                     "The PyTorch reference (model.py); skipped when absent.")

WINDOW_FRAMES = 64


def gemm_tflops(dtype, n=4096, reps=10):
  """An n x n matmul in `dtype` through XLA: the peak the step is compared with."""
  a = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
  b = jax.random.normal(jax.random.PRNGKey(2), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  start = time.perf_counter()
  for _ in range(reps):
    out = dot(a, b)
  out.block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e12


def peak_memory_bytes():
  """The device's peak bytes in use so far, where the backend reports it (not on CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def _config(batch, dtype):
  config = reference.config()
  config.global_batch_size = batch
  config.window_frames = WINDOW_FRAMES
  config.model.dtype = dtype
  return config


def _timed_rounds(run, steps, rounds):
  """Median seconds per step over `rounds` rounds of `steps` steps (after one warm-up round)."""
  run(1)
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    run(steps)
    times.append((time.perf_counter() - start) / steps)
  return float(np.median(times))


def jax_train_runner(batch, dtype):
  """`run(steps)`: that many train steps, waited for."""
  step = jitted_step.build(_config(batch, dtype))

  def run(steps):
    jax.block_until_ready(step.run(steps))
  return run


def jax_tokenize_runner(batch, dtype="float32"):
  """`run(steps)`: encoder + quantizer on `batch` windows, as tokenize runs them (float32)."""
  config = _config(batch, dtype)
  step = jitted_step.build(config, num_batches=1)
  model = models.get_model(config.model)
  variables = {"params": step.state.params, "vq_stats": step.state.vq_stats}
  encode = jax.jit(lambda v, x, m: model.apply(v, x, m, method=model.encode)["codes"])
  x, mask = step.batches[0]["x"], step.batches[0]["mask"]

  def run(steps):
    for _ in range(steps):
      out = encode(variables, x, mask)
    out.block_until_ready()
  return run


def torch_train_runner(reference_dir, batch, autocast_bf16):
  """The PyTorch reference's train step on the GPU, or None where it cannot run."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  if not torch.cuda.is_available() or not os.path.exists(os.path.join(reference_dir,
                                                                       "model.py")):
    return None
  sys.path.insert(0, reference_dir)
  try:
    import model as ref  # pylint: disable=g-import-not-at-top
  except ImportError:  # vector_quantize_pytorch missing: carry its wheel.
    return None
  device = torch.device("cuda")
  net = ref.RVQVAE().to(device).train()
  opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
  data = torch.randn(4, batch, WINDOW_FRAMES, ref.IN_DIM, device=device)
  count = [0]

  def run(steps):
    for _ in range(steps):
      x = data[count[0] % 4]
      count[0] += 1
      opt.zero_grad(set_to_none=True)
      with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast_bf16):
        recon, _, commit = net(x)
        loss, _ = ref.rvqvae_loss(recon.float(), x, commit)
      loss.backward()
      opt.step()
    torch.cuda.synchronize()
  return run


def emit(row):
  """Prints one row and appends it to accelerator.jsonl (a cut-short run keeps its rows)."""
  line = json.dumps(row)
  print(line, flush=True)
  if _OUTPUT_DIR.value:
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    with open(os.path.join(_OUTPUT_DIR.value, "accelerator.jsonl"), "a") as f:
      f.write(line + "\n")


def main(argv):
  del argv
  batches = [256] if _QUICK.value else [int(b) for b in _BATCH_SIZES.value]
  dtypes = ["float32"] if _QUICK.value else list(_DTYPES.value)
  steps, rounds = (3, 2) if _QUICK.value else (_STEPS.value, _ROUNDS.value)
  device = jax.devices()[0]
  peaks = {d: gemm_tflops(jnp.dtype(d), n=1024 if _QUICK.value else 4096) for d in
           ("float32", "bfloat16")}
  emit({"kind": "gemm_peak", "backend": jax.default_backend(), "device": device.device_kind,
        "tflops": peaks})
  flops = reference.TRAIN_FLOPS_PER_FRAME
  for batch in batches:
    for dtype in dtypes:
      jax_run = jax_train_runner(batch, dtype)
      torch_run = torch_train_runner(_REFERENCE_DIR.value, batch, dtype == "bfloat16")
      jax_s, torch_s = [], []
      for _ in range(rounds):  # Alternating, so a drift of the machine hits both sides.
        jax_s.append(_timed_rounds(jax_run, steps, 1))
        if torch_run is not None:
          torch_s.append(_timed_rounds(torch_run, steps, 1))
      frames_per_s = batch * WINDOW_FRAMES / float(np.median(jax_s))
      row = {"kind": "train_step", "batch": batch, "dtype": dtype,
             "frames_per_second": frames_per_s, "tflops": frames_per_s * flops / 1e12,
             "share_of_bf16_gemm_peak": frames_per_s * flops / 1e12 / peaks["bfloat16"],
             "share_of_f32_gemm_peak": frames_per_s * flops / 1e12 / peaks["float32"],
             "peak_memory_bytes": peak_memory_bytes(), "steps": steps, "rounds": rounds}
      if torch_s:
        torch_fps = batch * WINDOW_FRAMES / float(np.median(torch_s))
        row.update(torch_frames_per_second=torch_fps, jax_over_torch=frames_per_s / torch_fps,
                   torch_autocast="bfloat16" if dtype == "bfloat16" else "float32")
      emit(row)
  tokenize_batch = 256 if _QUICK.value else max(batches)
  seconds = _timed_rounds(jax_tokenize_runner(tokenize_batch), steps, rounds)
  emit({"kind": "tokenize", "batch": tokenize_batch, "dtype": "float32",
        "frames_per_second": tokenize_batch * WINDOW_FRAMES / seconds,
        "peak_memory_bytes": peak_memory_bytes()})


if __name__ == "__main__":
  app.run(main)
