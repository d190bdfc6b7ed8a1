"""The ablation: a decoder additive in the tokens is linear in them, and the driver runs a
variant end to end (train -> tokenize -> discovery) and writes its table."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np

from dfe_jax import models
from dfe_jax.data import ingest_lib
from dfe_jax.main_job import ablation
from dfe_jax.synthetic import synth_lib
from tolerances import assert_close_f32  # pylint: disable=g-bad-import-order
from tolerances import f32_rtol

configs = importlib.import_module("dfe_jax.configs.ablation")


def _additive_model(downsample_log2):
  config = configs.get_config("additive,smoke")
  config.model.downsample_log2 = downsample_log2
  config.model.quantizer.codebook_size = 16
  model = models.get_model(config.model)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, config.model.feature_dim))
  mask = jnp.ones((2, 16), bool)
  variables = jax.jit(lambda: models.init_codebooks(
      model, model.init({"params": jax.random.PRNGKey(0)}, x, mask), x, mask,
      jax.random.PRNGKey(1)))()
  return config, model, variables


def test_additive_decoder_is_linear_in_the_codes():
  for downsample_log2 in (0, 2):
    config, model, variables = _additive_model(downsample_log2)
    num_levels = config.model.quantizer.num_levels
    codes = jax.random.randint(jax.random.PRNGKey(2), (3, 5, num_levels), 0, 16)
    none = jnp.full_like(codes, -1)
    a = none.at[..., 0].set(codes[..., 0])                      # level 0 only
    b = codes.at[..., 0].set(-1)                                # every other level
    decode = jax.jit(lambda c: model.apply(variables, c, method="decode_codes"))
    both, alone_a, alone_b, neither = (np.asarray(decode(c)) for c in (codes, a, b, none))
    assert both.shape == (3, 5 * 2 ** downsample_log2, config.model.feature_dim)
    # One matmul over code_dim terms after a sum of L code vectors.
    rtol = f32_rtol(config.model.code_dim + num_levels, depth=2)
    assert_close_f32(alone_a + alone_b - neither, both, rtol)
    # Nearest-neighbour upsampling: every frame of a latent step is the same frame.
    steps = both.reshape(3, 5, 2 ** downsample_log2, -1)
    np.testing.assert_array_equal(steps, np.repeat(steps[:, :, :1], 2 ** downsample_log2, 2))


def test_ablation_runs_a_variant_end_to_end(tmp_path):
  out = tmp_path / "ablation"
  # The driver reuses a finished corpus and shards: a tiny one, with a subject per held-out split.
  manifest = synth_lib.write_corpus(synth_lib.CorpusSpec(
      num_subjects=4, videos_per_subject=2, video_seconds=6.0, seed=3), str(out / "corpus"))
  ingest_lib.ingest(manifest, str(out / "shards"), ingest_lib.IngestOptions(
      num_shards=1, val_fraction=0.25, test_fraction=0.25, num_processes=1))
  config = configs.get_config("additive,smoke")
  config.total_steps = 2
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  result = ablation.run_ablation(str(out), [("additive", "model.decoder=additive", config)],
                                 seeds=(0,), num_subjects=4, video_seconds=6.0)
  (row,) = result["runs"]
  assert row["variant"] == "additive" and 0 <= row["mean"] <= 1
  assert -1 <= row["recon_cosine"] <= 1 and len(row["usage_by_level"]) == 3
  assert row["non_additivity"] < 1e-4  # The additive decoder adds its levels' effects.
  assert set(row["baselines"]) >= {"kmeans", "residual_kmeans", "ica_oracle"}
  table = (out / "ablation.md").read_text()
  assert "| additive | 0 |" in table and "residual_kmeans" in table
  assert json.loads((out / "ablation.json").read_text())["runs"] == [row]
  # A finished run is read back, not trained again.
  again = ablation.run_ablation(str(out), [("additive", "model.decoder=additive", config)],
                                seeds=(0,))
  assert again["runs"] == [row]
