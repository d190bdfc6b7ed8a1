"""How busy other processes keep the machine while a benchmark times something.

Both speed benchmarks alternate JAX and a torch worker; a round is only comparable when nothing
else ran, so each reports the cores other processes used during it (about 0 on a quiet machine).
"""

import os
import time


def cpu_snapshot(child=None):
  """(wall, machine busy CPU s, CPU s of this process and of `child`), for other_cores."""
  with open("/proc/stat") as f:
    v = [int(x) for x in f.readline().split()[1:]]
  hz = os.sysconf("SC_CLK_TCK")
  t = os.times()
  own = t.user + t.system
  if child is not None:
    with open(f"/proc/{child.pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    own += (int(fields[11]) + int(fields[12])) / hz  # utime, stime of the worker.
  return time.perf_counter(), (v[0] + v[1] + v[2] + v[5] + v[6]) / hz, own


def other_cores(before, after):
  """Cores that processes other than this benchmark (and `child`) kept busy between snapshots."""
  wall = after[0] - before[0]
  return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / wall)
