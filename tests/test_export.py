"""Export + NumPy tokenizer: NumPy-only imports, codes equal to the JAX path except float ties,
decoded vectors within 1e-5, -1 skips a level in both decoders."""

import ast
import csv
import json
import os

import numpy as np
import pytest

from dfe_jax.data import ingest_lib
from dfe_jax.formats import outputs
from dfe_jax.tokenizer import chunked_encoder
from dfe_jax.tokenizer import export_lib
from dfe_jax.tokenizer import numpy_tokenizer
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import train_lib
import test_tokenize  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(small_shards, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  train_lib.train_and_evaluate(test_tokenize.smoke_config(small_shards), workdir)
  return trained_model.load(workdir)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("export") / "model.npz")
  export_lib.export(trained, path)
  return path


def test_numpy_tokenizer_imports_only_numpy_and_the_standard_library():
  with open(numpy_tokenizer.__file__) as f:
    tree = ast.parse(f.read())
  imported = {alias.name.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.Import) for alias in node.names}
  imported |= {node.module.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom)}
  assert imported <= {"json", "numpy"}, imported


def test_export_writes_npz_and_sidecar(trained, exported):
  with open(os.path.splitext(exported)[0] + ".json") as f:
    sidecar = json.load(f)
  assert sidecar["step"] == trained.step
  assert sidecar["feature_names"] == trained.info["feature_names"]
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  assert tok.config == trained.config.to_dict() and tok.fps == trained.info["fps"]
  assert tok.codebooks_CKE.shape == (1, 32, 16)
  with pytest.raises(outputs.OutputExistsError, match="--overwrite"):
    export_lib.export(trained, exported)


def first_level_tie(tok, z_D, codes_a, codes_b):
  """True when codes differ first at a level whose two codes are equally near (float rounding)."""
  residual = z_D.astype(np.float64)
  if tok.lookup_dim:
    residual = residual @ tok.params["quantizer/project_in/kernel"] + tok.params[
        "quantizer/project_in/bias"]
  unit = lambda v: v / max(np.linalg.norm(v), 1e-6) if tok.cosine else v
  for level in range(len(codes_a)):
    book = tok._codebook(level).astype(np.float64)  # pylint: disable=protected-access
    if codes_a[level] != codes_b[level]:
      d = [np.sum((unit(residual) - unit(book[c])) ** 2) for c in (codes_a[level],
                                                                   codes_b[level])]
      return abs(d[0] - d[1]) <= 1e-5 * max(1.0, float(np.sum(unit(residual) ** 2)))
    residual = residual - book[codes_a[level]]
  return True


def test_numpy_codes_and_decoding_match_jax_on_validation_videos(trained, exported,
                                                                 small_corpus, small_shards):
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  info = trained.info
  val = {v["video_id"] for v in _videos(small_shards) if v["split"] == "val"}
  rows = [r for r in ingest_lib.read_manifest(small_corpus) if r["video_id"] in val]
  assert rows
  encoder = chunked_encoder.ChunkedEncoder(trained, chunk_frames=128)
  compared = differing = 0
  for row in rows:
    video = ingest_lib.load_and_resample(row, info["fps"])
    x, _ = tokenize_lib.normalize_subject_videos(info, [tokenize_lib.VideoInput(
        row["video_id"], row["subject_id"], video["features"], video["valid"])])
    codes_jax, _, valid = tokenize_lib.encode_video(trained, x[0], video["valid"], encoder)
    codes_jax = np.where(valid[:, None], codes_jax, -1)
    out = tok.encode(video["features"], video["valid"], subject_mean=None, chunk_frames=200)
    np.testing.assert_array_equal(out["valid"], valid)
    for s in np.nonzero((out["codes"] != codes_jax).any(1))[0]:
      differing += 1
      assert first_level_tie(tok, out["latents"][s], out["codes"][s], codes_jax[s]), s
    compared += len(valid)
    num_frames = len(video["features"])
    np.testing.assert_allclose(tok.decode(codes_jax, num_frames),
                               tokenize_lib.decode_codes(trained, codes_jax, num_frames),
                               atol=1e-5, rtol=0)
  assert differing <= 0.01 * compared


def _videos(data_dir):
  with open(os.path.join(data_dir, "videos.csv")) as f:
    return list(csv.DictReader(f))


def test_minus_one_skips_a_level_in_both_decoders(trained, exported):
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  rng = np.random.default_rng(0)
  codes = rng.integers(0, 32, (40, 3)).astype(np.int32)
  skipped = codes.copy()
  skipped[:, 1:] = -1
  first_only = tok.codes_to_latents(codes[:, :1])
  np.testing.assert_allclose(tok.codes_to_latents(skipped), first_only, atol=1e-7)
  np.testing.assert_allclose(tok.decode(skipped), tok.decode_latents(first_only), atol=1e-6)
  np.testing.assert_allclose(tok.decode(skipped), tokenize_lib.decode_codes(trained, skipped),
                             atol=1e-5, rtol=0)


def test_numpy_chunked_encoding_equals_whole(exported):
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  rng = np.random.default_rng(1)
  x = np.cumsum(rng.normal(0, 0.3, (1501, len(tok.feature_names))), 0).astype(np.float32)
  whole = tok.encode(x, normalized=True, chunk_frames=10_000)
  chunked = tok.encode(x, normalized=True, chunk_frames=96)
  np.testing.assert_allclose(chunked["latents"], whole["latents"], atol=1e-5)
  np.testing.assert_array_equal(chunked["codes"], whole["codes"])


def test_batched_numpy_encoding_equals_one_video_at_a_time(exported):
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  rng = np.random.default_rng(2)
  videos = [(rng.normal(size=(n, len(tok.feature_names))).astype(np.float32),
             rng.uniform(size=n) > 0.1) for n in (3, 64, 130, 700, 701)]
  many = tok.encode_many(videos, chunk_frames=256, batch_frames=1024)
  for (x, valid), got in zip(videos, many):
    one = tok.encode(x, valid, normalized=True, chunk_frames=10_000)
    np.testing.assert_array_equal(got["codes"], one["codes"])
    np.testing.assert_allclose(got["latents"], one["latents"], atol=1e-5)


@pytest.mark.parametrize("changes", [
    {"quantizer.shared_codebook": False, "quantizer.cosine": True},
    {"quantizer.lookup_dim": 8, "quantizer.learning": "gradient"},
], ids=["unshared_cosine", "lookup_gradient"])
def test_numpy_matches_jax_for_quantizer_variants(changes):
  trained = test_tokenize.random_model(**changes)
  tok = numpy_tokenizer.NumpyTokenizer({k: np.asarray(v) for k, v in
                                        export_lib.export_arrays(trained).items()})
  x, valid = test_tokenize.long_video(301, 12, seed=4)
  codes_jax, latents_jax, _ = tokenize_lib.encode_video(trained, x, valid)
  out = tok.encode(x, valid, normalized=True, chunk_frames=128)
  np.testing.assert_allclose(out["latents"], latents_jax, atol=1e-5)
  for s in np.nonzero((out["codes"] != codes_jax).any(1))[0]:
    assert first_level_tie(tok, out["latents"][s], out["codes"][s], codes_jax[s]), s
  np.testing.assert_allclose(tok.decode(codes_jax), tokenize_lib.decode_codes(trained, codes_jax),
                             atol=1e-5, rtol=0)
