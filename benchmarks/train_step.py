"""Train frames/s of `dfe_jax.training.train_step.train_step` vs the PyTorch reference, alternating.

  python -m benchmarks.train_step [--pairs=5] [--steps=10] [--torch_python=/tmp/venv-torch/bin/python]
                                  [--trace_dir=/tmp/dfe_trace]
                                  [--reference_env=same|default]

The reference configuration is `configs/rvq.py`'s default `config.model` and `config.loss`
(53 features, 64-frame windows, global batch 256, width 256, 4x downsampling, residual stacks
with dilations (9, 3, 1), code_dim 128, 6 levels sharing one 512-code EMA codebook, velocity
loss): 4,545,973 parameters, the same as ../shared/bench/ref_torch/model.py. The step is
`benchmarks.jitted_step`'s: the real one, jitted as `train_lib` jits it, on four fixed random
batches already on the device (input pipeline excluded), with `config.model.conv_impl` "auto".

Each pair is one JAX round (`--steps` steps, timed from the first dispatch until the last
state is ready) then one torch round in a worker process that runs bench.py's timed loop body
(zero_grad, forward, loss, backward, AdamW; three warm-up steps at start, k-means included). The
machine's speed drifts by +-25% over minutes, so only the per-pair ratio is meaningful: the
headline is the median of the per-pair JAX/torch ratios. FLOPs are counted as the reference
counts them (2 x MACs of every conv plus the RVQ distances, train = 3 x forward). A float32
GEMM (2048^2, through XLA) is timed before, after and beside every JAX round; their median is
the peak, and both sides' median frames/s are reported as a share of it (the reference's share
says how much room 1.2x leaves). Pairs where other processes kept under 0.1 core busy get their
own median, because torch's OpenMP threads lose far more than XLA's pool to a concurrent job.
Peak memory is this process's maximum RSS (and the worker's). Prints one JSON line last.
`--trace_dir` also records one extra JAX round with `jax.profiler` (open it in TensorBoard's
profile tab, or parse the .xplane.pb); run with XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true to
name XLA's ops.

Page faults: each round also records, per step, the minor page faults and kernel CPU seconds
of each process. XLA's CPU runtime allocates a step's temporaries as one block (several
hundred MB here) and frees it after the step; glibc maps such blocks afresh every time, so each
step faults over 100,000 4 KiB pages in and spends about 0.25 core-seconds in the kernel.
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc >= 2.35, transparent huge pages in `madvise`
mode) backs those maps with 2 MiB pages: a few hundred faults a step. By default the variable
reaches both processes, so a run compares the two under the same allocator; huge pages speed up
the JAX step but not the reference, so `--reference_env=default` starts the torch worker without
GLIBC_TUNABLES, as the reference's own run.sh does: each side in its own recommended setting.
The JSON line records both sides' settings.

Where the step's time goes: `python -m benchmarks.conv_layers` times each conv's forward, input
gradient and kernel gradient alone. On the 2-core hosts measured (AMD EPYC, Intel Xeon) the
forward and input gradients run near the GEMM peak, while the kernel gradients (a matmul
contracting over batch and time into a small output) run well below it and are a third to half of
the step; `dfe_jax/models/xla_cpu/` says what was done about them.
"""

import json
import os
import resource
import statistics
import subprocess
import tempfile
import time

from absl import app
from absl import flags
import jax

from benchmarks import contention
from benchmarks import jitted_step
from benchmarks import peak
from benchmarks import reference

_PAIRS = flags.DEFINE_integer("pairs", 5, "Alternating JAX / torch rounds.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed train steps per round (bench.py times 10).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed JAX steps after compiling.")
_TRACE_DIR = flags.DEFINE_string("trace_dir", "", "Record one extra JAX round here ('' = no).")
_TORCH_PYTHON = flags.DEFINE_string(
    "torch_python", os.path.join(tempfile.gettempdir(), "venv-torch", "bin", "python"),
    "Interpreter with torch + vector-quantize-pytorch ('' to skip the reference).")
_REFERENCE_ENV = flags.DEFINE_enum(
    "reference_env", "same", ["same", "default"],
    "The torch worker's environment: 'same' as this process, or 'default': without "
    "GLIBC_TUNABLES, as the reference's run.sh starts it.")


# The reference worker: bench.py's model, optimizer, data (4 pooled N(0,1) batches, seed 0) and
# timed loop body. Three warm-up steps (the first runs k-means), then each stdin line `n` runs n
# steps and answers the summed step time, the fastest step, its own CPU and kernel seconds and
# its minor page faults.
_TORCH_WORKER = """
import json, os, resource, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from model import RVQVAE, rvqvae_loss
B, T, D = int(sys.argv[2]), int(sys.argv[3]), 53
torch.set_num_threads(2)
torch.manual_seed(0)
model = RVQVAE(shared_codebook=True)
opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
data = torch.randn(4, B, T, D, generator=torch.Generator().manual_seed(0))
model.train()
step = 0
def one():
  global step
  x = data[step % 4]
  step += 1
  t0 = time.perf_counter()
  opt.zero_grad(set_to_none=True)
  recon, _, commit = model(x)
  loss, _ = rvqvae_loss(recon, x, commit)
  loss.backward()
  opt.step()
  dt = time.perf_counter() - t0
  loss.detach().item()
  return dt
for _ in range(3):
  one()
print(json.dumps({"ready": True, "params": sum(p.numel() for p in model.parameters()),
                  "torch": torch.__version__}), flush=True)
for line in sys.stdin:
  c0, k0 = sum(os.times()[:2]), os.times().system
  f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  times = [one() for _ in range(int(line))]
  print(json.dumps({"seconds": sum(times), "min_step": min(times),
                    "cpu_seconds": sum(os.times()[:2]) - c0,
                    "kernel_seconds": os.times().system - k0,
                    "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
        flush=True)
"""


def reference_environ(mode, environ):
  """The torch worker's environment: `environ` ('same'), or it without GLIBC_TUNABLES."""
  environ = dict(environ)
  if mode == "default":
    environ.pop("GLIBC_TUNABLES", None)
  return environ


def start_torch_worker(python, batch, frames, environ):
  """The reference worker process (after its warm-up), or None when it cannot run here."""
  if not python or not os.path.exists(python) or not os.path.isdir(reference.REF_DIR):
    return None, None
  worker = subprocess.Popen([python, "-c", _TORCH_WORKER, reference.REF_DIR, str(batch),
                             str(frames)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=environ)
  return worker, json.loads(worker.stdout.readline())


def torch_round(worker, steps):
  """Runs `steps` reference steps in the worker; returns its timing answer."""
  worker.stdin.write(f"{steps}\n")
  worker.stdin.flush()
  return json.loads(worker.stdout.readline())


def kernel_work():
  """(minor page faults, kernel CPU seconds) of this process so far."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_minflt, usage.ru_stime


def kernel_work_since(before):
  """(faults, kernel seconds) of this process since the kernel_work() reading `before`."""
  return tuple(now - then for now, then in zip(kernel_work(), before))


def per_step_medians(rounds, steps):
  """Per-field medians of (faults, kernel seconds) round totals, per step; None without rounds."""
  if not rounds:
    return None, None
  return tuple(statistics.median(field) / steps for field in zip(*rounds))


def check_trace_dir(path):
  """Creates `path` if needed; a clear error before minutes of benchmarking if it can't be."""
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise app.UsageError(f"--trace_dir={path} cannot be written: {e.strerror}") from e


def main(argv):
  del argv
  if _TRACE_DIR.value:
    check_trace_dir(_TRACE_DIR.value)
  config = reference.config()
  batch_size, frames = config.global_batch_size, config.window_frames
  step = jitted_step.build(config)
  num_params = step.num_params
  compile_start = time.perf_counter()
  jax.block_until_ready(step.run(1))
  compile_seconds = time.perf_counter() - compile_start
  jax.block_until_ready(step.run(_WARMUP.value))

  def jax_round(steps):
    start = time.perf_counter()
    step.run(steps)
    jax.block_until_ready((step.state, step.metrics))
    return time.perf_counter() - start

  forward_flops, train_flops = reference.analytic_flops_per_frame(config.model)
  assert train_flops == reference.TRAIN_FLOPS_PER_FRAME, train_flops
  step_frames = batch_size * frames
  load_start = os.getloadavg()
  gemm_pre = peak.gemm_gflops()
  torch_environ = reference_environ(_REFERENCE_ENV.value, os.environ)
  worker, info = start_torch_worker(_TORCH_PYTHON.value, batch_size, frames, torch_environ)
  if worker is not None and info["params"] != num_params:
    print(f"warning: torch has {info['params']} parameters, JAX {num_params}", flush=True)
  jax_fps, torch_fps, ratios, busy, torch_rss, gemms, quiet = [], [], [], [], 0.0, [gemm_pre], []
  jax_kernel, torch_kernel = [], []  # (faults, kernel CPU seconds) of each round.
  try:
    for pair in range(_PAIRS.value):
      before, work = contention.cpu_snapshot(worker), kernel_work()
      seconds = jax_round(_STEPS.value)
      jax_kernel.append(kernel_work_since(work))
      busy.append(contention.other_cores(before, contention.cpu_snapshot(worker)))
      jax_fps.append(step_frames * _STEPS.value / seconds)
      gemms.append(peak.gemm_gflops())  # Beside each round: the host's speed drifts within minutes.
      line = (f"pair {pair}: jax {jax_fps[-1]:,.0f} frames/s "
              f"({jax_fps[-1] * train_flops / 1e9:.1f} GFLOP/s, others {busy[-1]:.2f} cores)")
      if worker is not None:
        before = contention.cpu_snapshot(worker)
        result = torch_round(worker, _STEPS.value)
        busy.append(contention.other_cores(before, contention.cpu_snapshot(worker)))
        torch_rss = result["peak_rss_mb"]
        torch_kernel.append((result["minor_faults"], result["kernel_seconds"]))
        torch_fps.append(step_frames * _STEPS.value / result["seconds"])
        ratios.append(jax_fps[-1] / torch_fps[-1])
        # Torch's OpenMP threads slow down far more than XLA's pool when another job takes a
        # core, so pairs where other processes stayed under 0.1 core are reported apart.
        if max(busy[-2:]) < 0.1:
          quiet.append(ratios[-1])
        line += (f", torch {torch_fps[-1]:,.0f} frames/s (others {busy[-1]:.2f} cores): "
                 f"jax/torch {ratios[-1]:.3f}")
      print(line + f"; load {os.getloadavg()[0]:.1f}", flush=True)
  finally:
    if worker is not None:
      worker.stdin.close()
      worker.wait()
  if _TRACE_DIR.value:
    with jax.profiler.trace(_TRACE_DIR.value):
      jax_round(_STEPS.value)
    print(f"trace of one round in {_TRACE_DIR.value}", flush=True)
  gemm_post = peak.gemm_gflops()
  gemms.append(gemm_post)
  gemm = statistics.median(gemms)
  fps = statistics.median(jax_fps)
  gflops = fps * train_flops / 1e9
  torch_fps_median = statistics.median(torch_fps) if torch_fps else None
  torch_gflops = torch_fps_median * train_flops / 1e9 if torch_fps else None
  faults, kernel_seconds = per_step_medians(jax_kernel, _STEPS.value)
  torch_faults, torch_kernel_seconds = per_step_medians(torch_kernel, _STEPS.value)
  result = {
      "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      "jax": jax.__version__, "backend": jax.default_backend(), "devices": jax.device_count(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
      "torch_glibc_tunables": torch_environ.get("GLIBC_TUNABLES", ""),
      "params": num_params, "reference_params": reference.PARAMS,
      "batch": batch_size, "frames": frames, "steps_per_round": _STEPS.value,
      "compile_and_first_step_s": compile_seconds,
      "train_frames_per_s": fps, "train_frames_per_s_all": jax_fps,
      "flops_per_frame_fwd": forward_flops, "flops_per_frame_train_3x": train_flops,
      "train_gflops_achieved": gflops,
      "gemm_gflops_pre": gemm_pre, "gemm_gflops_post": gemm_post, "gemm_gflops_all": gemms,
      "gemm_gflops": gemm,
      "train_over_gemm_peak": gflops / gemm,
      "torch_train_frames_per_s": torch_fps_median,
      "torch_train_frames_per_s_all": torch_fps,
      "torch_train_gflops_achieved": torch_gflops,
      "torch_train_over_gemm_peak": torch_gflops / gemm if torch_fps else None,
      "jax_over_torch_all": ratios,
      "jax_over_torch_median": statistics.median(ratios) if ratios else None,
      "jax_over_torch_quiet_pairs": quiet,
      "jax_over_torch_quiet_median": statistics.median(quiet) if quiet else None,
      "page_faults_per_step": faults, "kernel_seconds_per_step": kernel_seconds,
      "torch_page_faults_per_step": torch_faults,
      "torch_kernel_seconds_per_step": torch_kernel_seconds,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "torch_peak_rss_mb": torch_rss or None,
      "other_cores_all": busy, "other_cores_max": max(busy) if busy else None,
      "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
      "final_loss": float(step.metrics["train/loss/total"]),
  }
  print(f"train {fps:,.0f} frames/s | {train_flops:,.0f} FLOP/frame (3 x {forward_flops:,.0f}) | "
        f"{gflops:.1f} GFLOP/s | GEMM 2048^2 {gemm:.1f} GFLOP/s (median of {len(gemms)}) | "
        f"{gflops / gemm:.2f} of peak | peak RSS {result['peak_rss_mb']:,.0f} "
        "MB", flush=True)
  kernel_line = f"jax {faults:,.0f} page faults, {kernel_seconds:.3f} kernel CPU s per step"
  if torch_kernel:
    kernel_line += (f" | torch {torch_faults:,.0f} page faults, {torch_kernel_seconds:.3f} "
                    "kernel CPU s per step")
  print(kernel_line + f" | GLIBC_TUNABLES={result['glibc_tunables'] or '(unset)'}, torch's "
        f"{result['torch_glibc_tunables'] or '(unset)'}", flush=True)
  if ratios:
    print("jax/torch per pair: " + ", ".join(f"{r:.3f}" for r in ratios)
          + f" | median {result['jax_over_torch_median']:.3f} | torch median "
          f"{torch_fps_median:,.0f} frames/s "
          f"({result['torch_train_over_gemm_peak']:.2f} of peak) | "
          "quiet pairs (others < 0.1 core): "
          + (", ".join(f"{r:.3f}" for r in quiet) + f", median {statistics.median(quiet):.3f}"
             if quiet else "none"), flush=True)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
