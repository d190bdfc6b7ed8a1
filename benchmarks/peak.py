"""The machine's float32 GEMM speed through XLA: the peak the benchmarks compare against."""

import time

import jax
import jax.numpy as jnp


def gemm_gflops(n=2048, reps=10):
  """fp32 n x n matmul: 2 warm-up calls, then the mean of `reps` (as ref_torch's bench.py)."""
  a = jax.random.normal(jax.random.PRNGKey(1), (n, n))
  b = jax.random.normal(jax.random.PRNGKey(2), (n, n))
  dot = jax.jit(jnp.dot)
  for _ in range(2):
    dot(a, b).block_until_ready()
  start = time.perf_counter()
  for _ in range(reps):
    dot(a, b).block_until_ready()
  return 2 * n ** 3 / ((time.perf_counter() - start) / reps) / 1e9
