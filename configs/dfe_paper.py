"""Trains the paper's variant: a per-frame transformer RVQ-VAE with one shared codebook.

Each frame is its own sequence of sub-vectors (no temporal context), so every frame gets one row
of L codes, as in Discrete Facial Encoding (arXiv 2510.01662). The paper's exact sizes are not
published; these follow its description (shared codebook, residual levels, orthogonality and
sparsity ablations available through `config.loss`). Command:
`python -m dfe_jax.train --config configs/dfe_paper.py --workdir /tmp/dfe_paper` (`:smoke` shrinks).
Model keys are documented in configs/rvq.py.
"""

from dfe_jax.configs import rvq


def get_config(arg=None):
  """Per-frame transformer RVQ-VAE; `arg` as in configs/rvq.py (None, "demo", "smoke")."""
  smoke = arg == "smoke"
  config = rvq.get_config(arg)
  config.model.name = "frame_transformer"
  config.model.downsample_log2 = 0
  config.model.width = 32 if smoke else 128
  config.model.transformer.num_layers = 1 if smoke else 2
  config.model.transformer.mlp_dim = 64 if smoke else 256
  config.model.quantizer.dropout_prob = 0.0
  # Per-frame tokens have no temporal context, so velocity only smooths the decoder's output.
  config.loss.velocity_weight = 0.0
  return config


def sweep():
  """The paper's ablations: orthogonality and sparsity regularisers on and off."""
  return [{"loss.ortho_weight": o, "loss.sparsity_weight": s}
          for o in (0.0, 10.0) for s in (0.0, 1e-3)]
