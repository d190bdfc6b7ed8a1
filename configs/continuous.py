"""Trains the continuous baseline: the configs/rvq.py encoder and decoder with no quantizer.

It tells whether discretisation helps: probes on its latents against probes on DFE tokens.
Command: `python -m dfe_jax.train --config=configs/continuous.py --workdir=runs/continuous
--data_dir=SHARDS` (`:demo` is the main job's 150-step run, about 1.5 minutes here; `:smoke`
trains for seconds). Expected result: lower reconstruction error than configs/rvq.py (nothing
is discretised); its value is as the probes' continuous baseline. Model keys are documented in configs/rvq.py.
"""

from dfe_jax.configs import rvq


def get_config(arg=None):
  """configs/rvq.py (same `arg`: None, "demo", "smoke") with `quantizer.kind = "none"`."""
  config = rvq.get_config(arg)
  config.model.quantizer.kind = "none"
  config.loss.commit_weight = 0.0
  config.loss.codebook_weight = 0.0
  config.best_metric = "eval/recon_mse"
  config.best_mode = "min"
  if arg == "demo":
    # Only its latents feed a probe baseline; half the tokenizer's steps keep the job short.
    config.total_steps = 150
    config.eval_every_steps = 150
  return config


def sweep():
  """No sweep of its own: it mirrors whichever configs/rvq.py run it is the baseline for."""
  return []
