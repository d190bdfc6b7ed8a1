"""Timing of one jitted program, shared by the per-op benchmarks."""

import statistics
import time

import jax


def median_seconds(fn, args, repeats):
  """Median wall seconds of `repeats` calls of fn(*args), after one untimed call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)
