"""The model described once (models/architecture.py): every implementation runs its layer list,
old files with Flax's automatic layer names still open, and a broken list fails naming a layer."""

import json
import pathlib
import shutil

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dfe_jax import models
from dfe_jax.formats import tokens
from dfe_jax.models import architecture
from dfe_jax.tokenizer import chunked_encoder
from dfe_jax.tokenizer import export_lib
from dfe_jax.tokenizer import numpy_tokenizer
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import checkpointing
from dfe_jax.training import train_step
from tolerances import assert_close_f32  # pylint: disable=g-bad-import-order
from tolerances import assert_codes_equal_except_ties
from tolerances import f32_rtol

LEGACY = pathlib.Path(__file__).resolve().parent / "data" / "legacy_c10fd6b"

# The NumPy tokenizer's own copies of the rules it must share with `architecture`.
# pylint: disable=protected-access
FORMAT1_LAYERS = numpy_tokenizer._format1_layers
NUMPY_RECEPTIVE_FIELD = numpy_tokenizer._receptive_field_frames
NUMPY_FRAMES_PER_STEP = numpy_tokenizer._frames_per_step
# pylint: enable=protected-access

# (downsample_log2, dilations): the default's one stage-less encoder and stacked variants.
SHAPES = [(0, (9, 3, 1)), (1, (3, 1)), (2, (9, 3, 1))]


def _model_config(downsample_log2, dilations, conv_impl="xla"):
  config = json.loads((LEGACY / "run" / "config.json").read_text())["config"]["model"]
  config.update(downsample_log2=downsample_log2, conv_impl=conv_impl)
  config["conv"]["dilations"] = list(dilations)
  return ml_collections.ConfigDict(config)


def _param_names(tree, prefix=""):
  """The module paths that hold a `kernel`, as "a/b"."""
  if "kernel" in tree:
    return [prefix]
  return [n for k, v in tree.items() for n in _param_names(v, f"{prefix}/{k}".lstrip("/"))]


@pytest.mark.parametrize("conv_impl", ["xla", "xla_cpu"])
@pytest.mark.parametrize("downsample_log2,dilations", SHAPES)
def test_the_flax_model_has_one_submodule_per_conv_layer(downsample_log2, dilations, conv_impl):
  config = _model_config(downsample_log2, dilations, conv_impl)
  model = models.get_model(config)
  x = np.zeros((1, 16, config.feature_dim), np.float32)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, np.ones((1, 16), bool)))
  for part in ("encoder", "decoder"):
    layers = architecture.conv_layers(getattr(model, part).layers())
    assert sorted(_param_names(params["params"][part])) == sorted(c.name for c in layers)
    for layer in layers:
      kernel = params["params"][part][layer.name]["kernel"]
      assert (kernel.shape[0], kernel.shape[2]) == (layer.kernel_size, layer.features)


@pytest.mark.parametrize("downsample_log2,dilations", SHAPES)
def test_numpy_tokenizer_reads_the_lists_and_format_1_as_they_were(downsample_log2, dilations):
  """The NumPy tokenizer's frozen format-1 lists are today's renamed by `legacy_names`, and its
  receptive field is `architecture`'s."""
  config = _model_config(downsample_log2, dilations)
  model = models.get_model(config)
  encoder, decoder = FORMAT1_LAYERS(config.to_dict())
  for old, module in ((encoder, model.encoder), (decoder, model.decoder)):
    layers = module.layers()
    renamed = architecture.legacy_names(layers)
    today = json.loads(json.dumps(architecture.to_json(layers)))

    def rename(items):
      for item in items:
        if item["kind"] == "conv":
          item["name"] = renamed[item["name"]]
        elif item["kind"] == "residual":
          rename(item["body"])
    rename(today)
    assert old == today
  layers = model.encoder.layers()
  reach = architecture.receptive_field_frames(layers)
  assert chunked_encoder.receptive_field_frames(model) == reach
  assert NUMPY_RECEPTIVE_FIELD(architecture.to_json(layers)) == reach
  assert chunked_encoder.downsample_factor(model) == 2 ** downsample_log2
  assert NUMPY_FRAMES_PER_STEP(architecture.to_json(layers)) == 2 ** downsample_log2


@pytest.fixture(scope="module")
def legacy_trained():
  return trained_model.load(str(LEGACY / "run"))


def test_an_old_checkpoint_restores_under_todays_names(legacy_trained):
  """Weights read from the format-1 model.npz (Flax's names) equal the renamed checkpoint's."""
  with np.load(LEGACY / "model.npz") as old:
    for part in ("encoder", "decoder"):
      module = getattr(legacy_trained.model, part)
      for name, old_name in architecture.legacy_names(module.layers()).items():
        np.testing.assert_array_equal(legacy_trained.variables["params"][part][name]["kernel"],
                                      old[f"params/{part}/{old_name}/kernel"])


def test_an_old_run_resumes_and_initialises_under_todays_names(tmp_path, legacy_trained):
  """Resume renames the optimizer's moments too; init_from takes the old run's weights."""
  config = json.loads((LEGACY / "run" / "config.json").read_text())["config"]
  config = ml_collections.ConfigDict(config)
  model = legacy_trained.model
  fresh = train_step.create_state(model, train_step.make_optimizer(config), jax.random.PRNGKey(1),
                                  window_frames=config.window_frames,
                                  num_features=legacy_trained.info["num_features"])
  shutil.copytree(LEGACY / "run", tmp_path / "run")
  resumed = checkpointing.Checkpoints(str(tmp_path / "run"), model, 2, "", "max")
  state, origin = resumed.restore(fresh)
  resumed.close()
  assert origin == "resumed from step 2" and int(state.step) == 2
  assert jax.tree.structure(state) == jax.tree.structure(fresh)
  fresh_run = checkpointing.Checkpoints(str(tmp_path / "new"), model, 2, "", "max")
  state, origin = fresh_run.restore(fresh, init_from=str(LEGACY / "run"))
  fresh_run.close()
  assert origin.startswith("initialised from") and int(state.step) == 0
  jax.tree.map(np.testing.assert_array_equal, state.params, legacy_trained.variables["params"])


ADDITIVE = pathlib.Path(__file__).resolve().parent / "data" / "legacy_ae440c8_additive"


def test_an_old_additive_run_restores_resumes_and_tokenizes_as_it_did(tmp_path):
  """ae440c8's additive decoder kept `readout` as a Dense [D, F]: today's [1, D, F] 1x1 conv
  takes its values, the optimizer's moments follow, and the encoder's codes are the old ones."""
  trained = trained_model.load(str(ADDITIVE / "run"))
  raw = checkpointing.read_only_manager(str(ADDITIVE / "run" / "checkpoints")).restore(
      2, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  stored = raw["params"]["decoder"]["readout"]["kernel"]
  assert stored.ndim == 2
  np.testing.assert_array_equal(trained.variables["params"]["decoder"]["readout"]["kernel"],
                                stored[None])
  shutil.copytree(ADDITIVE / "run", tmp_path / "run")
  config = ml_collections.ConfigDict(
      json.loads((ADDITIVE / "run" / "config.json").read_text())["config"])
  fresh = train_step.create_state(trained.model, train_step.make_optimizer(config),
                                  jax.random.PRNGKey(1), window_frames=config.window_frames,
                                  num_features=trained.info["num_features"])
  resumed = checkpointing.Checkpoints(str(tmp_path / "run"), trained.model, 2, "", "max")
  state, origin = resumed.restore(fresh)
  resumed.close()
  assert origin == "resumed from step 2"
  assert jax.tree.map(np.shape, state) == jax.tree.map(np.shape, fresh)
  tokenize_lib.tokenize_videos(trained, str(LEGACY / "corpus" / "manifest.csv"),
                               str(tmp_path / "tokens"), latents=True)
  today, before = tokens.read(str(tmp_path / "tokens")), tokens.read(str(ADDITIVE / "tokens"))
  assert list(today["video_id"]) == list(before["video_id"])
  codebooks = export_lib.codebooks(trained)
  valid = today["valid"]
  assert_codes_equal_except_ties(before["codes"][valid], today["codes"][valid],
                                 today["latents"][valid], today["latents"][valid], codebooks,
                                 cosine=config.model.quantizer.cosine)


def test_old_and_new_model_npz_tokenize_as_the_old_run_did(tmp_path, legacy_trained):
  """The format-1 model.npz and today's export of the same checkpoint give the old tokens."""
  export_lib.export(legacy_trained, str(tmp_path / "model.npz"))
  before = tokens.read(str(LEGACY / "tokens"))
  corpus = LEGACY / "corpus"
  for path in (LEGACY / "model.npz", tmp_path / "model.npz"):
    tok = numpy_tokenizer.NumpyTokenizer.load(str(path))
    for i, video_id in enumerate(before["video_id"]):
      with np.load(corpus / "videos" / f"{video_id}.npz") as video:
        x, valid = video["features"], video["valid"]
      out = tok.encode(x, valid)
      rows = slice(before["offset"][i], before["offset"][i + 1])
      keep = before["valid"][rows]
      assert_codes_equal_except_ties(before["codes"][rows][keep], out["codes"][keep],
                                     out["latents"][keep], out["latents"][keep],
                                     tok.codebooks_CKE, cosine=tok.cosine)


def _broken(tmp_path, edit):
  with np.load(LEGACY / "model.npz") as old:
    arrays = {k: old[k] for k in old.files}
  edit(arrays)
  path = str(tmp_path / "broken.npz")
  np.savez(path, **arrays)
  return path


def test_a_model_npz_missing_a_layer_or_of_another_version_fails_naming_it(tmp_path):
  def drop(arrays):
    del arrays["params/decoder/ResStack_1/Conv_2/kernel"]
  with pytest.raises(numpy_tokenizer.ModelFileError,
                     match=r"broken.npz: layer decoder/ResStack_1/Conv_2 has no weights"):
    numpy_tokenizer.NumpyTokenizer.load(_broken(tmp_path, drop))

  def newer(arrays):
    arrays.update(format_version=np.int32(2), decoder_layers_json=np.array("[]"),
                  encoder_layers_json=np.array(json.dumps([{"kind": "attention", "name": "a"}])))
  with pytest.raises(numpy_tokenizer.ModelFileError,
                     match=r"broken.npz: encoder layer 'a' has kind 'attention'"):
    numpy_tokenizer.NumpyTokenizer.load(_broken(tmp_path, newer))

  def no_layers(arrays):
    arrays.update(format_version=np.int32(2))
  with pytest.raises(numpy_tokenizer.ModelFileError,
                     match=r"broken.npz: model.npz format 2 lacks encoder_layers_json, "
                           r"decoder_layers_json$"):
    numpy_tokenizer.NumpyTokenizer.load(_broken(tmp_path, no_layers))

  def future(arrays):
    arrays["format_version"] = np.int32(99)
  with pytest.raises(numpy_tokenizer.ModelFileError,
                     match=r"broken.npz: model.npz format 99; this tokenizer reads formats 1, 2"):
    numpy_tokenizer.NumpyTokenizer.load(_broken(tmp_path, future))


def test_the_additive_decoder_exports_and_decodes_the_same_in_numpy(tmp_path):
  """The additive decoder is a layer list too: model.npz carries it and NumPy decodes as JAX."""
  from dfe_jax.configs import ablation  # pylint: disable=g-import-not-at-top
  config = ablation.get_config("additive,smoke")
  model = models.get_model(config.model)
  features = config.model.feature_dim
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (1, 32, features)), np.float32)
  mask = np.ones((1, 32), bool)
  variables = models.init_codebooks(model, model.init(jax.random.PRNGKey(0), x, mask), x, mask,
                                    jax.random.PRNGKey(1))
  info = {"feature_names": [f"f{i}" for i in range(features)], "fps": 25.0,
          "num_features": features,
          "normalization": {"mode": "global", "mean": [0.0] * features, "std": [1.0] * features}}
  trained = trained_model.TrainedModel(config, info, model, variables, step=0)
  export_lib.export(trained, str(tmp_path / "model.npz"))
  tok = numpy_tokenizer.NumpyTokenizer.load(str(tmp_path / "model.npz"))
  assert [layer["name"] for layer in tok.decoder_layers] == ["readout"]
  codes = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (1, 8, tok.num_levels), 0,
                                        config.model.quantizer.codebook_size))
  want = np.asarray(model.apply(variables, codes, method="decode_codes"))[0]
  got = tok.decode(codes[0], denormalized=False)
  # A sum of L code vectors, then one matmul over code_dim terms (as test_ablation's bound).
  assert_close_f32(got, want, f32_rtol(config.model.code_dim + tok.num_levels, depth=2))


def test_a_checkpoint_that_does_not_fit_its_config_is_named_before_orbax_reads_it(tmp_path):
  shutil.copytree(LEGACY / "run", tmp_path / "run")
  config_path = tmp_path / "run" / "config.json"
  written = json.loads(config_path.read_text())
  written["config"]["model"]["width"] = 32
  config_path.write_text(json.dumps(written))
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"checkpoints/2: params/decoder/Conv_0/bias is \(16,\) in the "
                           r"checkpoint but \(32,\) in the config's model$"):
    trained_model.load(str(tmp_path / "run"))
