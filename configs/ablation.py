"""Ablation of the tokenizer: what makes its tokens discover the synthetic corpus's displays.

Each variant is `configs/rvq.py:demo` (the main job's model) with a few named overrides
(`VARIANTS`), nothing else: the trainer is the same. `python -m dfe_jax.ablate
--output_dir=runs/ablation` trains every variant on the main job's corpus, tokenizes it, scores
display discovery and writes the table of docs/ablation.md (about 4 minutes a variant on a
2-core CPU). One variant alone:
`python -m dfe_jax.train --config=configs/ablation.py:additive --workdir=... --data_dir=SHARDS`;
`:<variant>,smoke` shrinks it to `configs/rvq.py:smoke`'s size.

The axes: the sparsity (L1 on the encoder output) and orthogonality (squared cosine between
codes) regularisers, made to act (the orthogonality term has no gradient path into an EMA
codebook, so its variant learns the codebook by gradient; `gradient` is that change alone);
temporal downsampling 4x (the reference) vs 2x vs 1x (one latent step per frame); codebook size
512 vs 64; one codebook shared by the levels vs one per level; and the decoder: the conv decoder
vs `model.decoder = "additive"` (dfe_jax/models/additive_decoder.py: frames = W sum_l c_{k_l},
so a token is a deformation).
"""

from dfe_jax.configs import rvq

VARIANTS = {
    "reference": {},
    "additive": {"model.decoder": "additive"},
    "downsample_1x": {"model.downsample_log2": 0},
    "downsample_2x": {"model.downsample_log2": 1},
    "additive_1x": {"model.decoder": "additive", "model.downsample_log2": 0},
    "ortho": {"model.quantizer.learning": "gradient", "loss.ortho_weight": 10.0},
    "gradient": {"model.quantizer.learning": "gradient"},
    "sparsity": {"loss.sparsity_weight": 0.01},
    "codebook_64": {"model.quantizer.codebook_size": 64},
    "per_level": {"model.quantizer.shared_codebook": False},
}


def apply_overrides(config, overrides):
  """Sets each dotted key of `overrides` on `config`; a key the config lacks is an error."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    if leaf not in node:
      raise KeyError(f"configs/ablation.py: {key} is not a config field")
    node[leaf] = value
  return config


def get_config(arg=None):
  """`arg` is "<variant>" (demo size) or "<variant>,smoke"; None is the reference."""
  variant, _, size = (arg or "reference").partition(",")
  if variant not in VARIANTS or size not in ("", "demo", "smoke"):
    raise ValueError(f"configs/ablation.py: unknown argument {arg!r} (variants: "
                     f"{', '.join(VARIANTS)}; size: demo or smoke)")
  config = rvq.get_config("smoke" if size == "smoke" else "reference_demo")
  if "decoder" not in config.model:
    config.model.decoder = "network"  # The encoder's own decoder (conv or transformer).
  return apply_overrides(config, VARIANTS[variant])


def sweep():
  """One dict of overrides per variant, named by `name` (the rest are `--config.<key>` flags)."""
  return [dict(name=name, **overrides) for name, overrides in VARIANTS.items()]
