"""Training metrics to TensorBoard event files and `metrics.jsonl`, from process 0 only."""

import json
import os

import jax
import numpy as np
import tensorflow as tf
from tensorflow.io import gfile


class MetricWriter:
  """Writes scalar metrics per step; other processes get a writer that does nothing."""

  def __init__(self, workdir):
    self.active = jax.process_index() == 0
    if self.active:
      self._summary = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
      self._jsonl = gfile.GFile(os.path.join(workdir, "metrics.jsonl"), "a")

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
