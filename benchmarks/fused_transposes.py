"""Why the train step's kernel-gradient transposes are slow on XLA:CPU: what is fused into them.

  python -m benchmarks.fused_transposes [--calls=20]

Every conv's kernel gradient contracts over batch x time, the major axis of both operands, so XLA
first transposes the conv's input to [channels, batch x time], fused with whatever produces that
input; in the train step that is the previous conv's bias add and ReLU (`copy_bitcast_fusion` in
a `benchmarks.train_step --trace_dir` trace). This times, at the reference step's [256, 32, 256]
activations, that transpose alone and the whole kernel gradient x^T @ dy for four producers of x:
an activation already stored (nothing to fuse), ReLU (a broadcast zero fused), bias + ReLU (a
broadcast bias too, as in the plain model's step with `jax.nn.relu`), and the XLA:CPU kernels'
ReLU with no constant, `dfe_jax.models.xla_cpu.activations.relu` (max(h, h - h)), which shows
that the broadcasts, not the arithmetic, are what cost; and the matmul alone, on an operand
already laid out [channels, batch x time]. Each program is jitted alone and timed as the median of
`--calls` calls. Prints a line per producer and one JSON line last.
"""

import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing

from dfe_jax.models.xla_cpu import activations

_CALLS = flags.DEFINE_integer("calls", 20, "Timed calls per program (the median is kept).",
                              lower_bound=1)

# The conv input x as each producer makes it from the stored h [B, T, C] and a bias [C].
PRODUCERS = {
    "stored": lambda h, bias: h,
    "relu": lambda h, bias: jax.nn.relu(h),
    "bias_relu": lambda h, bias: jax.nn.relu(h + bias),
    "relu_no_constant": lambda h, bias: activations.relu(h),
}


def programs(producer):
  """(transpose, kernel gradient) of the conv input `producer` makes: jitted, of (h, bias, dy)."""
  transpose = jax.jit(lambda h, bias, dy: jnp.transpose(producer(h, bias), (2, 0, 1)))
  kernel_grad = jax.jit(lambda h, bias, dy: jnp.einsum("btc,bto->co", producer(h, bias), dy))
  return transpose, kernel_grad


def time_producers(shape, repeats):
  """({producer: (transpose s, kernel-gradient s)}, matmul-alone s) at activations of `shape`."""
  rng = np.random.default_rng(0)
  h, dy = (jnp.asarray(rng.standard_normal(shape, np.float32)) for _ in range(2))
  bias = jnp.asarray(rng.standard_normal(shape[-1:], np.float32))
  seconds = {name: tuple(timing.median_seconds(fn, (h, bias, dy), repeats)
                         for fn in programs(producer))
             for name, producer in PRODUCERS.items()}
  h_T = jnp.transpose(h, (2, 0, 1)).reshape(shape[-1], -1)
  matmul = timing.median_seconds(jax.jit(jnp.matmul), (h_T, dy.reshape(-1, shape[-1])), repeats)
  return seconds, matmul


def main(argv):
  del argv
  shape = (256, 32, 256)
  seconds, matmul = time_producers(shape, _CALLS.value)
  moved = 2 * np.prod(shape) * 4  # Bytes the transpose reads and writes.
  stored_transpose, stored_grad = seconds["stored"]
  print(f"matmul alone (x already [C, B*T]): {matmul * 1e3:.2f} ms", flush=True)
  for name, (transpose, grad) in seconds.items():
    print(f"{name:17s} transpose {transpose * 1e3:5.2f} ms ({moved / transpose / 1e9:5.1f} GB/s, "
          f"{transpose / stored_transpose:4.2f}x stored) | kernel gradient {grad * 1e3:5.2f} ms "
          f"({grad / stored_grad:4.2f}x stored)", flush=True)
  print(json.dumps({
      "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "jax": jax.__version__,
      "backend": jax.default_backend(), "shape": shape, "matmul_alone_ms": matmul * 1e3,
      "transpose_ms": {name: s[0] * 1e3 for name, s in seconds.items()},
      "kernel_grad_ms": {name: s[1] * 1e3 for name, s in seconds.items()}}))


if __name__ == "__main__":
  app.run(main)
