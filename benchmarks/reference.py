"""The PyTorch reference's configuration and how it counts FLOPs, shared by the benchmarks.

The reference is ../shared/bench/ref_torch/ (model.py, bench.py): configs/rvq.py's default model
with 53 FLAME features, 4,545,973 parameters.
"""

import os
import sys

from dfe_jax.formats import feature_spaces

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF_DIR = os.path.join(os.path.dirname(REPO), "shared", "bench", "ref_torch")
PARAMS = 4_545_973
TRAIN_FLOPS_PER_FRAME = 12_579_840


def config():
  """configs/rvq.py's default config with the reference's 53 FLAME features."""
  sys.path.insert(0, os.path.join(REPO, "configs"))
  import rvq  # pylint: disable=g-import-not-at-top
  rvq_config = rvq.get_config("reference")
  rvq_config.model.feature_dim = len(feature_spaces.FLAME53)
  return rvq_config


def analytic_flops_per_frame(model_config):
  """(forward, train) FLOPs per input frame, counted as ref_torch/model.py counts them.

  2 x MACs of every conv (biases, ReLUs and additions ignored) plus 2*K*D per latent per level
  for the RVQ distances; train = 3 x forward.
  """
  c = model_config
  width, code, k, down = c.width, c.code_dim, c.conv.kernel_size, c.downsample_log2
  stack = sum(width * width * k + width * width for _ in c.conv.dilations)
  enc = c.feature_dim * width * k
  for i in range(1, down + 1):
    enc += width * width * c.conv.down_kernel / 2 ** i + stack / 2 ** i
  enc += width * code * k / 2 ** down
  dec = code * width * k / 2 ** down
  for i in range(down, 0, -1):
    dec += stack / 2 ** i + width * width * k / 2 ** (i - 1)
  dec += width * width * k + width * c.feature_dim * k
  q = c.quantizer
  rvq = 2 * q.codebook_size * code * q.num_levels / 2 ** down
  forward = 2 * enc + 2 * dec + rvq
  return forward, 3 * forward
