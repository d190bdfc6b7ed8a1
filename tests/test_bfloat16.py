"""bfloat16 training end to end: the smoke run trains, its held-out reconstruction error is
float32's within bfloat16 rounding, and its checkpoint exports and tokenizes in float32."""

import csv
import json
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfe_jax.data import ingest_lib
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.tokenizer import chunked_encoder
from dfe_jax.tokenizer import export_lib
from dfe_jax.tokenizer import numpy_tokenizer
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import train_lib
from tolerances import SMOKE_MODEL_RTOL  # pylint: disable=g-bad-import-order
from tolerances import assert_close_f32
from tolerances import assert_codes_equal_except_ties

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "configs"))
import rvq  # pylint: disable=g-import-not-at-top,wrong-import-position

BF16_U = 2.0 ** -9  # bfloat16 unit roundoff: 8 significant bits.


@pytest.fixture(scope="module")
def runs(small_shards, tmp_path_factory):
  """{dtype: workdir} of configs/rvq.py:smoke trained in float32 and in bfloat16 (one seed)."""
  workdirs = {}
  for dtype in ("float32", "bfloat16"):
    config = rvq.get_config("smoke")
    config.data_dir = small_shards
    config.model.dtype = dtype
    config.log_every_steps = 1
    workdirs[dtype] = str(tmp_path_factory.mktemp(dtype))
    train_lib.train_and_evaluate(config, workdirs[dtype])
  return workdirs


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_bfloat16_smoke_run_trains_and_reconstructs_held_out_data_as_float32_does(runs):
  rows = {dtype: _metrics(workdir) for dtype, workdir in runs.items()}
  losses = [r["train/loss/total"] for r in rows["bfloat16"] if "train/loss/total" in r]
  assert len(losses) == 20 and statistics.median(losses[-5:]) < statistics.median(losses[:5])
  evals = {dtype: [r for r in rs if "eval/recon_mse" in r] for dtype, rs in rows.items()}
  assert [r["step"] for r in evals["bfloat16"]] == [r["step"] for r in evals["float32"]] == [10, 20]
  # bfloat16 rounds each of the encoder's and decoder's d convs' outputs to 8 significant bits
  # (u = 2**-9), so the reconstruction r moves by up to d u relative (25 convs: 4.9%) and its MSE
  # by up to 2 d u |r| / |r - x|: 2 d u while r is no larger than its error, as after 20 steps
  # (measured over 6 seeds: at most 1.0%). The cosine is not held: near 0.05 after 20 steps it
  # follows which codes k-means picked from the first batch's latents, and it varies as much
  # between float32 seeds (-0.03 to 0.09) as between the dtypes.
  params = trained_model.load(runs["float32"]).variables["params"]
  depth = sum(1 for path, _ in jax.tree_util.tree_leaves_with_path(params)
              if path[-1].key == "kernel")
  for bf16, f32 in zip(evals["bfloat16"], evals["float32"]):
    assert bf16["eval/recon_mse"] == pytest.approx(f32["eval/recon_mse"], rel=2 * depth * BF16_U)


def test_bfloat16_checkpoint_holds_float32_parameters_and_codebook(runs):
  trained = trained_model.load(runs["bfloat16"])
  assert trained.config.model.dtype == "bfloat16"
  for leaf in jax.tree.leaves(trained.variables):
    assert leaf.dtype in (jnp.float32, jnp.bool_), leaf.dtype


def _validation_videos(trained, corpus, shards):
  with open(os.path.join(shards, "videos.csv")) as f:
    val = {v["video_id"] for v in csv.DictReader(f) if v["split"] == "val"}
  rows = [r for r in manifest_format.read(corpus) if r["video_id"] in val]
  assert rows
  for row in rows:
    video = ingest_lib.load_and_resample(row, trained.info["fps"])
    x, _ = tokenize_lib.normalize_subject_videos(trained.info, [tokenize_lib.VideoInput(
        row["video_id"], row["subject_id"], video["features"], video["valid"])])
    yield video, x[0]


def test_bfloat16_model_exports_and_tokenizes_as_numpy_does(runs, small_corpus, small_shards,
                                                           tmp_path):
  trained = trained_model.load(runs["bfloat16"])
  path = str(tmp_path / "model.npz")
  export_lib.export(trained, path)
  tok = numpy_tokenizer.NumpyTokenizer.load(path)
  encoder = chunked_encoder.ChunkedEncoder(trained, chunk_frames=128)
  for video, x in _validation_videos(trained, small_corpus, small_shards):
    codes, latents, valid = tokenize_lib.encode_video(trained, x, video["valid"], encoder)
    out = tok.encode(video["features"], video["valid"], subject_mean=None, chunk_frames=200)
    np.testing.assert_array_equal(out["valid"], valid)
    # Float32 on both sides: the latents agree within float32 rounding, the codes but for ties.
    assert_close_f32(out["latents"], latents, SMOKE_MODEL_RTOL)
    assert_codes_equal_except_ties(out["codes"], np.where(valid[:, None], codes, -1),
                                   out["latents"], latents, tok.codebooks_CKE)


def test_bfloat16_model_decodes_in_float32_as_numpy_does(runs, small_corpus, small_shards):
  trained = trained_model.load(runs["bfloat16"])
  assert trained.model.decoder.dtype == jnp.float32
  path = os.path.join(runs["bfloat16"], "model.npz")
  if not os.path.exists(path):
    export_lib.export(trained, path)
  tok = numpy_tokenizer.NumpyTokenizer.load(path)
  rng = np.random.default_rng(0)
  codes = rng.integers(0, tok.codebooks_CKE.shape[1], (40, 3)).astype(np.int32)
  assert_close_f32(tok.decode(codes, 160), tokenize_lib.decode_codes(trained, codes, 160),
                   SMOKE_MODEL_RTOL)
