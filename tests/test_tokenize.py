"""Tokenize: chunked codes equal whole-video codes, one compile per bucket, DESIGN's file layout,
shards = manifest, subject normalisation, clear errors."""

import csv
import dataclasses
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import pytest

from dfe_jax import models
from dfe_jax.formats import outputs
from dfe_jax.formats import tokens as tokens_format
from dfe_jax.formats import video_files
from dfe_jax.tokenizer import chunked_encoder
from dfe_jax.tokenizer import export_lib
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import train_lib
from tolerances import SMOKE_MODEL_RTOL  # pylint: disable=g-bad-import-order
from tolerances import assert_close_f32
from tolerances import assert_codes_equal_except_ties

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke_config(data_dir):
  spec = importlib.util.spec_from_file_location("rvq_config", os.path.join(REPO, "configs",
                                                                          "rvq.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.data_dir = data_dir
  config.total_steps = 10
  config.eval_every_steps = 10
  config.checkpoint_every_steps = 10
  return config


@pytest.fixture(scope="module")
def trained(small_shards, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  train_lib.train_and_evaluate(smoke_config(small_shards), workdir)
  return trained_model.load(workdir)


def whole_video_codes(trained, x_TF, valid_T):
  """The model's own `encode` on the whole video at once: the reference for chunking."""
  out = trained.model.apply(trained.variables, jnp.asarray(x_TF[None]), jnp.asarray(valid_T[None]),
                            method=models.Model.encode)
  return (np.asarray(out["codes"][0]), np.asarray(out["latents"][0]),
          np.asarray(out["latent_mask"][0]))


def assert_same_tokens(trained, codes, latents, codes_ref, latents_ref):
  """Latents within float32 rounding of the reference, codes equal but for float ties."""
  assert_close_f32(latents, latents_ref, SMOKE_MODEL_RTOL)
  q = trained.config.model.quantizer
  params = trained.variables["params"].get("quantizer", {})
  project_in = ((params["project_in"]["kernel"], params["project_in"]["bias"]) if q.lookup_dim
                else None)
  assert_codes_equal_except_ties(codes, codes_ref, latents, latents_ref,
                                 export_lib.codebooks(trained), cosine=q.cosine,
                                 project_in=project_in)


def long_video(num_frames, num_features, seed=0):
  rng = np.random.default_rng(seed)
  x = np.cumsum(rng.normal(0, 0.3, (num_frames, num_features)), 0).astype(np.float32)
  x = (x - x.mean(0)) / (x.std(0) + 1e-6)
  valid = np.ones(num_frames, bool)
  valid[700:730] = False
  return x, valid


def test_receptive_field_of_reference_model_is_86_frames():
  spec = importlib.util.spec_from_file_location("rvq_ref", os.path.join(REPO, "configs", "rvq.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  # stem 1 + (down 1 + 2*13) + (down 2*1 + 4*13) + out 4
  model = models.get_model(module.get_config("reference").model)
  assert chunked_encoder.receptive_field_frames(model) == 86


@pytest.mark.parametrize("chunk_frames", [64, 200, 4096])
def test_chunked_codes_equal_whole_video_codes(trained, chunk_frames):
  x, valid = long_video(2501, trained.info["num_features"])  # Not a multiple of 4 on purpose.
  codes_ref, latents_ref, mask_ref = whole_video_codes(trained, x, valid)
  encoder = chunked_encoder.ChunkedEncoder(trained, chunk_frames=chunk_frames, batch_frames=2048)
  codes, latents, mask = tokenize_lib.encode_video(trained, x, valid, encoder)
  np.testing.assert_array_equal(mask, mask_ref)
  assert_same_tokens(trained, codes, latents, codes_ref, latents_ref)


def random_model(**changes):
  """A TrainedModel with random weights for a smoke-sized model variant (no training)."""
  spec = importlib.util.spec_from_file_location("rvq_variant", os.path.join(REPO, "configs",
                                                                           "rvq.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.model.feature_dim = 12
  for key, value in changes.items():
    node = config.model
    *parents, leaf = key.split(".")
    for name in parents:
      node = node[name]
    node[leaf] = value
  model = models.get_model(config.model)
  variables = model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 16, 12)),
                         jnp.ones((1, 16), bool))
  info = {"num_features": 12, "feature_names": [f"f_{i:03d}" for i in range(12)], "fps": 25.0,
          "normalization": {"mode": "global", "mean": [0.0] * 12, "std": [1.0] * 12}}
  return trained_model.TrainedModel(ml_collections.ConfigDict(config.to_dict()), info, model,
                                    variables, 0)


@pytest.mark.parametrize("changes", [
    {"quantizer.shared_codebook": False, "quantizer.cosine": True},
    {"quantizer.lookup_dim": 8, "quantizer.learning": "gradient"},
    {"name": "frame_transformer", "downsample_log2": 0},
], ids=["unshared_cosine", "lookup_gradient", "frame_transformer"])
def test_model_variants_chunked_equal_whole(changes):
  trained = random_model(**changes)
  x, valid = long_video(257, 12, seed=3)
  codes_ref, latents_ref, mask_ref = whole_video_codes(trained, x, valid)
  encoder = chunked_encoder.ChunkedEncoder(trained, chunk_frames=64, batch_frames=512)
  codes, latents, mask = tokenize_lib.encode_video(trained, x, valid, encoder)
  np.testing.assert_array_equal(mask, mask_ref)
  assert_same_tokens(trained, codes, latents, codes_ref, latents_ref)


def test_continuous_model_writes_latents(tmp_path):
  trained = random_model(**{"quantizer.kind": "none"})
  x, valid = long_video(130, 12, seed=5)
  videos = [tokenize_lib.VideoInput("v", "s", x, valid)]
  with pytest.raises(ValueError, match="--latents"):
    tokenize_lib.tokenize_videos(trained, videos, str(tmp_path / "no_latents"))
  tokenize_lib.tokenize_videos(trained, videos, str(tmp_path / "cont"), latents=True)
  t = outputs.load_npz(str(tmp_path / "cont" / "tokens.npz"))
  assert t["codes"].shape == (33, 0) and t["latents"].shape == (33, 16)
  assert int(t["num_levels"]) == 0 and int(t["codebook_size"]) == 0


def test_one_compile_per_bucket(trained):
  encoder = chunked_encoder.ChunkedEncoder(trained, chunk_frames=256, batch_frames=1024)
  lengths = [5, 17, 63, 64, 65, 100, 130, 200, 255, 300, 1000, 1001]
  videos = [long_video(n, trained.info["num_features"], seed=n) for n in lengths]
  results = encoder.encode(videos)
  assert [len(r[0]) for r in results] == [-(-n // 4) for n in lengths]
  used = {encoder.bucket(w.length) for v, (x, _) in enumerate(videos)
          for w in encoder.windows(v, len(x))}
  compiled = encoder._encode._cache_size()  # pylint: disable=protected-access
  assert compiled == len(used) <= len(encoder.buckets)


def test_tokens_file_layout_and_shards_equal_manifest(trained, small_corpus, small_shards,
                                                      tmp_path):
  out = str(tmp_path / "tok")
  summary = tokenize_lib.tokenize_videos(trained, small_corpus, out, latents=True,
                                         chunk_frames=128)
  assert summary["num_videos"] == 20 and summary["files"] == [os.path.join(out, "tokens.npz")]
  t = outputs.load_npz(os.path.join(out, "tokens.npz"))
  n, levels = len(t["codes"]), trained.config.model.quantizer.num_levels
  assert t["codes"].dtype == np.int32 and t["codes"].shape == (n, levels)
  assert t["offset"].dtype == np.int64 and t["offset"][-1] == n and len(t["offset"]) == 21
  assert t["valid"].dtype == bool and t["latents"].shape == (n, trained.config.model.code_dim)
  assert t["frame_start"].dtype == np.int32 and t["frame_end"].dtype == np.int32
  assert int(t["codebook_size"]) == trained.config.model.quantizer.codebook_size
  assert int(t["num_levels"]) == levels and bool(t["shared_codebook"])
  assert (t["codes"][~t["valid"]] == -1).all() and (t["codes"][t["valid"]] >= 0).all()
  with open(os.path.join(out, "tokens_index.csv")) as f:
    index = list(csv.DictReader(f))
  assert [r["video_id"] for r in index] == list(t["video_id"])
  for v, row in enumerate(index):
    rows = slice(t["offset"][v], t["offset"][v + 1])
    assert int(row["num_steps"]) == rows.stop - rows.start
    assert int(row["num_valid_steps"]) == t["valid"][rows].sum()
    assert t["frame_start"][rows][0] == 0 and t["frame_end"][rows][-1] == int(row["num_frames"])
  # The first video, read by hand, equals the model's whole-video encoding.
  video = video_files.read_video(os.path.join(os.path.dirname(small_corpus), "videos",
                                          f"{t['video_id'][0]}.npz"))
  x, _ = tokenize_lib.normalize_subject_videos(trained.info, [tokenize_lib.VideoInput(
      "v", "s", video.features, video.valid)])
  codes_ref, latents_ref, mask_ref = whole_video_codes(trained, x[0], video.valid)
  first = slice(0, t["offset"][1])
  np.testing.assert_array_equal(t["valid"][first], mask_ref)
  assert_same_tokens(trained, t["codes"][first], t["latents"][first],
                     np.where(mask_ref[:, None], codes_ref, -1),
                     np.where(mask_ref[:, None], latents_ref, 0.0))
  # Shards (records cut at 128 frames, spread over files) give the same tokens.
  out_shards = str(tmp_path / "tok_shards")
  tokenize_lib.tokenize_videos(trained, small_shards, out_shards)
  s = outputs.load_npz(os.path.join(out_shards, "tokens.npz"))
  order = {v: i for i, v in enumerate(t["video_id"])}
  for j, vid in enumerate(s["video_id"]):
    i = order[vid]
    np.testing.assert_array_equal(s["codes"][s["offset"][j]:s["offset"][j + 1]],
                                  t["codes"][t["offset"][i]:t["offset"][i + 1]])


def test_subject_normalisation_uses_the_subjects_own_mean(trained, tmp_path):
  stats = dict(trained.info["normalization"], mode="subject", subject_mean={})
  subject_model = dataclasses.replace(trained, info=dict(trained.info, normalization=stats))
  f = trained.info["num_features"]
  a, valid_a = long_video(300, f, seed=1)
  b, valid_b = long_video(500, f, seed=2)
  offset = np.linspace(-1, 1, f).astype(np.float32)
  videos = [tokenize_lib.VideoInput("a", "s1", a + offset, valid_a),
            tokenize_lib.VideoInput("b", "s1", b + offset, valid_b)]
  tokenize_lib.tokenize_videos(subject_model, videos, str(tmp_path / "subject"), latents=True)
  got = outputs.load_npz(str(tmp_path / "subject" / "tokens.npz"))
  mean = np.concatenate([a[valid_a], b[valid_b]]).mean(0) + offset
  std = np.asarray(stats["std"], np.float32)
  codes_a, latents_a, mask_a = whole_video_codes(trained, (a + offset - mean) / std, valid_a)
  first = slice(0, got["offset"][1])
  np.testing.assert_array_equal(got["valid"][first], mask_a)
  assert_same_tokens(trained, got["codes"][first], got["latents"][first],
                     np.where(mask_a[:, None], codes_a, -1),
                     np.where(mask_a[:, None], latents_a, 0.0))


def test_split_into_numbered_files(trained, small_corpus, tmp_path):
  out = str(tmp_path / "many")
  summary = tokenize_lib.tokenize_videos(trained, small_corpus, out, max_steps_per_file=300)
  assert len(summary["files"]) > 1
  assert os.path.basename(summary["files"][0]) == f"tokens-00000-of-{len(summary['files']):05d}.npz"
  merged = tokens_format.read(out)
  assert len(merged["video_id"]) == 20 and merged["offset"][-1] == len(merged["codes"])
  assert not [n for n in os.listdir(out) if n.startswith(".staging")]


def test_clear_errors(trained, small_corpus, tmp_path):
  out = str(tmp_path / "tok")
  tokenize_lib.tokenize_videos(trained, small_corpus, out)
  with pytest.raises(outputs.OutputExistsError, match="--overwrite"):
    tokenize_lib.tokenize_videos(trained, small_corpus, out)
  f = trained.info["num_features"]
  with pytest.raises(tokenize_lib.TokenizeError, match="empty video"):
    tokenize_lib.tokenize_videos(trained, [tokenize_lib.VideoInput(
        "e", "s", np.zeros((0, f), np.float32), np.zeros(0, bool))], str(tmp_path / "empty"))
  assert not os.listdir(tmp_path / "empty")  # Nothing half-written.
  names = list(trained.info["feature_names"])
  names[3] = "someOtherFeature"
  video = tmp_path / "renamed.npz"
  np.savez(video, features=np.zeros((50, f), np.float32), fps=np.float32(25.0),
           feature_names=np.array(names))
  manifest = tmp_path / "manifest.csv"
  manifest.write_text(f"video_id,subject_id,path\nv,s,{video}\n")
  with pytest.raises(tokenize_lib.TokenizeError, match="feature names differ from training"):
    tokenize_lib.tokenize_videos(trained, str(manifest), str(tmp_path / "renamed"))
  with pytest.raises(FileNotFoundError, match="no checkpoint|not found"):
    trained_model.load(str(tmp_path))
