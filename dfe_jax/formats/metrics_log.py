"""`metrics.jsonl` of a training workdir: one JSON object per line, `step` and scalar metrics.

`training/metric_writer.py` appends the rows as training runs (and drops rows past the restored
step on resume); everything else reads them through `read`.
"""

import json
import os

from dfe_jax.formats import filesystem

FILE_NAME = "metrics.jsonl"


def read(workdir):
  """The rows of `workdir`'s `metrics.jsonl`, in order (empty when there is none)."""
  path = os.path.join(workdir, FILE_NAME)
  if not filesystem.exists(path):
    return []
  with filesystem.open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
