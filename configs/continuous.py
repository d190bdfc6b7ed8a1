"""Trains the continuous baseline: the configs/rvq.py encoder and decoder with no quantizer.

It tells whether discretisation helps: probes on its latents against probes on DFE tokens.
Command: `python -m dfe_jax.train --config configs/continuous.py --workdir /tmp/dfe_cont`
(`:smoke` shrinks it). Model keys are documented in configs/rvq.py.
"""

import importlib.util
import os

import ml_collections


def _sibling(name):
  """Loads configs/<name>.py by path, so the config works from any working directory."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"dfe_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


rvq = _sibling("rvq")


def get_config(arg=None):
  """The RVQ-VAE of configs/rvq.py with `quantizer.kind = "none"`; `arg="smoke"` shrinks it."""
  smoke = arg == "smoke"
  config = ml_collections.ConfigDict()
  config.model = rvq.model_config(smoke)
  config.model.quantizer.kind = "none"
  config.loss = rvq.loss_config()
  config.loss.commit_weight = 0.0
  config.loss.codebook_weight = 0.0
  return config
