"""Training metrics to TensorBoard event files and `metrics.jsonl`, from process 0 only."""

import json
import os

import jax
import numpy as np
import tensorflow as tf

from dfe_jax.formats import filesystem
from dfe_jax.formats import metrics_log
from dfe_jax.formats import outputs


def drop_rows_after(path, step):
  """Rewrites a `metrics.jsonl` without the rows past `step` (whole, or not at all).

  A run killed after its last checkpoint logged steps that the resumed run logs again; without
  them the file holds what an uninterrupted run would have written.
  """
  if not filesystem.exists(path):
    return
  with filesystem.open(path) as f:
    lines = f.read().splitlines()
  kept = [l for l in lines if l.strip() and json.loads(l)["step"] <= step]
  if len(kept) == len(lines):
    return
  with outputs.atomic_open(path) as f:
    f.write("".join(l + "\n" for l in kept))


class MetricWriter:
  """Writes scalar metrics per step; other processes get a writer that does nothing."""

  def __init__(self, workdir, start_step=0):
    self.active = jax.process_index() == 0
    if self.active:
      jsonl = os.path.join(workdir, metrics_log.FILE_NAME)
      drop_rows_after(jsonl, start_step)
      self._summary = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
      self._jsonl = filesystem.open(jsonl, "a")

  def write(self, step, metrics):
    """Records `{name: scalar}` at `step`."""
    if not self.active:
      return
    scalars = {k: float(np.asarray(v)) for k, v in metrics.items() if np.ndim(v) == 0}
    with self._summary.as_default(step=step):
      for name, value in scalars.items():
        tf.summary.scalar(name, value)
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()

  def close(self):
    if self.active:
      self._summary.close()
      self._jsonl.close()
