"""Export + NumPy tokenizer: NumPy-only imports, codes equal to the JAX path except float ties,
decoded vectors within float32 rounding (tests/tolerances.py), -1 skips a level in both decoders."""

import ast
import csv
import json
import os

import numpy as np
import pytest

from dfe_jax.data import ingest_lib
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import normalization
from dfe_jax.formats import outputs
from dfe_jax.tokenizer import chunked_encoder
from dfe_jax.tokenizer import export_lib
from dfe_jax.tokenizer import numpy_tokenizer
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import train_lib
import test_tokenize  # pylint: disable=g-bad-import-order
from tolerances import SMOKE_MODEL_RTOL  # pylint: disable=g-bad-import-order
from tolerances import assert_close_f32
from tolerances import assert_codes_equal_except_ties

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


def test_numpy_codes_and_decoding_match_jax_on_validation_videos(trained, exported,
                                                                 small_corpus, small_shards):
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  info = trained.info
  val = {v["video_id"] for v in _videos(small_shards) if v["split"] == "val"}
  rows = [r for r in manifest_format.read(small_corpus) if r["video_id"] in val]
  assert rows
  encoder = chunked_encoder.ChunkedEncoder(trained, chunk_frames=128)
  compared = differing = 0
  for row in rows:
    video = ingest_lib.load_and_resample(row, info["fps"])
    x, _ = tokenize_lib.normalize_subject_videos(info, [tokenize_lib.VideoInput(
        row["video_id"], row["subject_id"], video["features"], video["valid"])])
    codes_jax, latents_jax, valid = tokenize_lib.encode_video(trained, x[0], video["valid"],
                                                              encoder)
    codes_jax = np.where(valid[:, None], codes_jax, -1)
    out = tok.encode(video["features"], video["valid"], subject_mean=None, chunk_frames=200)
    np.testing.assert_array_equal(out["valid"], valid)
    assert_close_f32(out["latents"], latents_jax, SMOKE_MODEL_RTOL)
    differing += _assert_codes_equal_except_ties(tok, out, codes_jax, latents_jax,
                                                 max_fraction=1.0)
    compared += len(valid)
    num_frames = len(video["features"])
    assert_close_f32(tok.decode(codes_jax, num_frames),
                     tokenize_lib.decode_codes(trained, codes_jax, num_frames), SMOKE_MODEL_RTOL)
  assert differing <= 0.01 * compared


def _assert_codes_equal_except_ties(tok, out, codes_ref, latents_ref, max_fraction=0.01):
  """`out`'s codes equal `codes_ref` except at float ties (tolerances.py); differing rows."""
  project_in = ((tok.params["quantizer/project_in/kernel"], tok.params["quantizer/project_in/bias"])
                if tok.lookup_dim else None)
  return assert_codes_equal_except_ties(out["codes"], codes_ref, out["latents"], latents_ref,
                                        tok.codebooks_CKE, cosine=tok.cosine,
                                        project_in=project_in, max_fraction=max_fraction)


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
  # Adding a zero vector is exact, so both sides are the identical computation.
  np.testing.assert_array_equal(tok.codes_to_latents(skipped), first_only)
  np.testing.assert_array_equal(tok.decode(skipped), tok.decode_latents(first_only))
  assert_close_f32(tok.decode(skipped), tokenize_lib.decode_codes(trained, skipped),
                   SMOKE_MODEL_RTOL)


def test_numpy_chunked_encoding_equals_whole(exported):
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  rng = np.random.default_rng(1)
  x = np.cumsum(rng.normal(0, 0.3, (1501, len(tok.feature_names))), 0).astype(np.float32)
  whole = tok.encode(x, normalized=True, chunk_frames=10_000)
  chunked = tok.encode(x, normalized=True, chunk_frames=96)
  assert_close_f32(chunked["latents"], whole["latents"], SMOKE_MODEL_RTOL)
  _assert_codes_equal_except_ties(tok, chunked, whole["codes"], whole["latents"])


def test_batched_numpy_encoding_equals_one_video_at_a_time(exported):
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  rng = np.random.default_rng(2)
  videos = [(rng.normal(size=(n, len(tok.feature_names))).astype(np.float32),
             rng.uniform(size=n) > 0.1) for n in (3, 64, 130, 700, 701)]
  many = tok.encode_many(videos, chunk_frames=256, batch_frames=1024)
  for (x, valid), got in zip(videos, many):
    one = tok.encode(x, valid, normalized=True, chunk_frames=10_000)
    assert_close_f32(got["latents"], one["latents"], SMOKE_MODEL_RTOL)
    _assert_codes_equal_except_ties(tok, got, one["codes"], one["latents"])


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
  assert_close_f32(out["latents"], latents_jax, SMOKE_MODEL_RTOL)
  _assert_codes_equal_except_ties(tok, out, codes_jax, latents_jax)
  assert_close_f32(tok.decode(codes_jax), tokenize_lib.decode_codes(trained, codes_jax),
                   SMOKE_MODEL_RTOL)


def test_numpy_tokenizer_normalises_as_the_formats_layer(exported):
  """The NumPy tokenizer keeps its own copy of the normalisation (it is one copyable file); it
  must compute what formats/normalization computes, in both modes."""
  tok = numpy_tokenizer.NumpyTokenizer.load(exported)
  rng = np.random.default_rng(0)
  x = rng.normal(2.0, 3.0, (50, len(tok.feature_names))).astype(np.float32)
  valid = rng.random(50) > 0.2
  stats = {"mode": "global", "mean": tok.norm_mean.tolist(), "std": tok.norm_std.tolist()}
  (expected,), _ = normalization.normalize_subject_videos(stats, [x], [valid])
  np.testing.assert_array_equal(tok.normalize(x, valid), expected)  # Same float32 operations.
  tok.norm_mode = "subject"
  stats = {"mode": "subject", "mean": [0.0] * len(tok.norm_std), "std": tok.norm_std.tolist()}
  (expected,), mean = normalization.normalize_subject_videos(stats, [x], [valid])
  # The subject mean: float64 sums in both, one summed directly and one via moments, so the
  # offsets agree to float64 rounding and the results to float32 rounding of (x - offset) / std.
  assert_close_f32(tok.normalize(x, valid), expected, rtol=4 * 2.0 ** -24)
  assert_close_f32(tok.normalize(x, valid, subject_mean=mean), expected, rtol=4 * 2.0 ** -24)
