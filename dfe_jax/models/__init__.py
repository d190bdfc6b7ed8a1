"""Models: `get_model(config.model)` builds the RVQ-VAE that a config names.

Keys read (see configs/rvq.py for defaults and meaning): `name` ("temporal_conv" |
"frame_transformer"), `feature_dim`, `code_dim`, `width`, `downsample_log2`, `dtype`,
`conv_impl` ("auto" | "xla" | "xla_cpu"; absent in older configs, read as "auto"),
`decoder` ("network": the model's own decoder | "additive": `additive_decoder`, linear in the
summed codes; absent in older configs, read as "network"), `prefix_metrics_in_train`,
`conv.*`, `transformer.*` and `quantizer.*` with `quantizer.kind` ("rvq" | "none").
"""

import jax
import jax.numpy as jnp

from dfe_jax.models import additive_decoder
from dfe_jax.models import frame_transformer
from dfe_jax.models import residual_vq
from dfe_jax.models import rvq_vae
from dfe_jax.models import temporal_conv
from dfe_jax.models.quantizer import usage_metrics_from_counts
from dfe_jax.models.rvq_vae import Model
from dfe_jax.models.rvq_vae import init_codebooks

__all__ = ["CONV_IMPLS", "conv_modules", "get_model", "get_quantizer", "init_codebooks",
           "resolve_conv_impl", "usage_metrics_from_counts", "Model"]

CONV_IMPLS = ("auto", "xla", "xla_cpu")


def resolve_conv_impl(conv_impl, backend=None):
  """The kernels `config.model.conv_impl` names: "auto" is "xla_cpu" on the CPU backend, else "xla".

  `backend` defaults to `jax.default_backend()`, the platform the model will be compiled for.
  """
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"config.model.conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
  if conv_impl == "auto":
    return "xla_cpu" if (backend or jax.default_backend()) == "cpu" else "xla"
  return conv_impl


def conv_modules(conv_impl):
  """The module holding `Conv`, `Encoder` and `Decoder` for "xla" or "xla_cpu"."""
  if conv_impl == "xla_cpu":
    from dfe_jax.models import xla_cpu  # pylint: disable=g-import-not-at-top
    return xla_cpu
  return temporal_conv


def get_quantizer(quantizer_config, code_dim):
  """The quantizer module that `config.model.quantizer` describes."""
  q = quantizer_config
  if q.kind == "none":
    return residual_vq.Continuous(code_dim=code_dim)
  if q.kind != "rvq":
    raise ValueError(f"config.model.quantizer.kind must be 'rvq' or 'none', got {q.kind!r}")
  if q.dropout_mode not in ("batch", "example"):
    raise ValueError(f"quantizer.dropout_mode must be 'batch' or 'example', got {q.dropout_mode!r}")
  return residual_vq.ResidualVQ(
      num_levels=q.num_levels, codebook_size=q.codebook_size, code_dim=code_dim,
      shared_codebook=q.shared_codebook, lookup_dim=q.lookup_dim, cosine=q.cosine,
      learning=q.learning, ema_decay=q.ema_decay, ema_eps=q.ema_eps,
      dead_code_threshold=q.dead_code_threshold, dead_code_reset_count=q.dead_code_reset_count,
      kmeans_iters=q.kmeans_iters, dropout_prob=q.dropout_prob,
      dropout_per_example=q.dropout_mode == "example", ortho_active_only=q.ortho_active_only)


def get_model(model_config, dtype=None):
  """Builds `rvq_vae.Model` (a Linen module) from `config.model`.

  `dtype` overrides `config.model.dtype`, the encoder's and decoder's compute dtype: a model
  restored to tokenize gets "float32", so its codes do not depend on the dtype it trained in.
  """
  c = model_config
  dtype = jnp.dtype(dtype or c.dtype)
  conv_impl = resolve_conv_impl(c.get("conv_impl", "auto"))
  if c.name == "temporal_conv":
    conv = conv_modules(conv_impl)
    encoder = conv.Encoder(
        code_dim=c.code_dim, width=c.width, downsample_log2=c.downsample_log2,
        dilations=tuple(c.conv.dilations), kernel_size=c.conv.kernel_size,
        down_kernel=c.conv.down_kernel, dtype=dtype)
    decoder = conv.Decoder(
        feature_dim=c.feature_dim, width=c.width, downsample_log2=c.downsample_log2,
        dilations=tuple(c.conv.dilations), kernel_size=c.conv.kernel_size, dtype=dtype)
    downsample_log2 = c.downsample_log2
  elif c.name == "frame_transformer":
    if c.downsample_log2:
      raise ValueError("frame_transformer makes one latent per frame: set downsample_log2=0")
    t = c.transformer
    common = dict(width=c.width, subvector_dim=t.subvector_dim, num_layers=t.num_layers,
                  num_heads=t.num_heads, mlp_dim=t.mlp_dim, dtype=dtype)
    encoder = frame_transformer.Encoder(code_dim=c.code_dim, **common)
    decoder = frame_transformer.Decoder(feature_dim=c.feature_dim, **common)
    downsample_log2 = 0
  else:
    raise ValueError(
        f"config.model.name must be 'temporal_conv' or 'frame_transformer', got {c.name!r}")
  decoder_kind = c.get("decoder", "network")
  if decoder_kind == "additive":
    decoder = additive_decoder.Decoder(feature_dim=c.feature_dim,
                                       downsample_log2=downsample_log2, dtype=dtype)
  elif decoder_kind != "network":
    raise ValueError(
        f"config.model.decoder must be 'network' or 'additive', got {decoder_kind!r}")
  return rvq_vae.Model(encoder=encoder, quantizer=get_quantizer(c.quantizer, c.code_dim),
                       decoder=decoder, downsample_log2=downsample_log2,
                       prefix_metrics_in_train=c.prefix_metrics_in_train)
