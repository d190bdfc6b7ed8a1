"""The RVQ-VAE models: shapes, masks, encode/decode round trips, jit, sharding, the configs, the
XLA:CPU kernels against the plain model, and bfloat16 compute around a float32 quantizer."""

import ast
import importlib.util
import os
import pathlib

import flax.linen as nn
import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from dfe_jax import models
from dfe_jax.formats import feature_spaces
from dfe_jax.models import conv1d
from dfe_jax.models import temporal_conv
from dfe_jax.models.xla_cpu import activations
from dfe_jax.models.xla_cpu import conv1d as cpu_conv1d
from dfe_jax.models.xla_cpu import temporal_conv as cpu_temporal_conv
from dfe_jax.training import losses
from dfe_jax.training import train_step
from tolerances import SMOKE_MODEL_RTOL  # pylint: disable=g-bad-import-order
from tolerances import assert_close_f32
from tolerances import assert_codes_equal_except_ties
from tolerances import assert_tree_close_f32
from tolerances import codes_of_differing_rows
from tolerances import f32_rtol

_CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def _load_config(name, arg="smoke"):
  spec = importlib.util.spec_from_file_location(f"test_cfg_{name}",
                                                os.path.join(_CONFIGS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _tiny(name="rvq", **model_overrides):
  """A smoke config shrunk further so each test compiles in seconds."""
  config = _load_config(name)
  config.model.feature_dim = 53
  config.model.code_dim = 8
  config.model.width = 16
  config.model.conv.dilations = (3, 1)
  config.model.transformer.mlp_dim = 32
  config.model.quantizer.codebook_size = 16
  for key, value in model_overrides.items():
    target = config.model
    *path, leaf = key.split(".")
    for part in path:
      target = target[part]
    target[leaf] = value
  return config


def _data(batch=4, frames=16, seed=0):
  x = jax.random.normal(jax.random.PRNGKey(seed), (batch, frames, 53))
  mask = jnp.ones((batch, frames), bool).at[0, frames - 3:].set(False)
  return x, mask


def _fitted(model, x, mask):
  """Initialised variables with k-means-fitted codebooks, in one compiled call."""
  def init(x, mask):
    variables = model.init({"params": jax.random.PRNGKey(0)}, x, mask)
    return models.init_codebooks(model, variables, x, mask, jax.random.PRNGKey(1))
  return jax.jit(init)(x, mask)


@pytest.fixture(scope="module")
def conv():
  """The tiny conv model, a batch of 8 x 16 frames and fitted variables, shared to save compiles."""
  config = _tiny()
  model = models.get_model(config.model)
  x, mask = _data(batch=8)
  return config, model, x, mask, _fitted(model, x, mask)


@pytest.mark.parametrize("frames", [13, 1])
def test_odd_sequence_lengths_work(conv, frames):
  _, model, _, _, variables = conv  # Conv weights do not depend on the sequence length.
  x, _ = _data(batch=2, frames=frames)
  mask = jnp.ones((2, frames), bool).at[1, frames // 2:].set(False)
  (recon, aux), _ = jax.jit(lambda v: model.apply(
      v, x, mask, train=True, rngs={"vq": jax.random.PRNGKey(2)}, mutable=["vq_stats"]))(variables)
  steps = -(-frames // 4)  # downsample_log2 = 2 in the smoke config.
  assert recon.shape == x.shape
  assert aux["codes"].shape == (2, steps, 3)
  assert aux["latents"].shape == (2, steps, 8) and aux["latents"].dtype == jnp.float32
  want_mask = [[any(mask[b, 4 * s:4 * s + 4]) for s in range(steps)] for b in range(2)]
  np.testing.assert_array_equal(aux["latent_mask"], want_mask)
  assert np.all(np.isfinite(recon))
  assert int(aux["vq/counts_LK"][0].sum()) == int(np.sum(want_mask))


def test_no_retracing_across_train_steps(conv):
  config, model, x, mask, variables = conv
  traces = []

  @jax.jit
  def train_step(params, vq_stats, x, mask, step):
    traces.append(1)
    rng = jax.random.fold_in(jax.random.PRNGKey(0), step)

    def loss_fn(p):
      (recon, aux), updates = model.apply({"params": p, "vq_stats": vq_stats}, x, mask,
                                          train=True, rngs={"vq": rng}, mutable=["vq_stats"])
      loss, _ = losses.total_loss(recon, x, mask, aux, config.loss, feature_spaces.FLAME53)
      return loss, updates["vq_stats"]

    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    params = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
    return params, new_stats, loss

  params, stats = variables["params"], variables["vq_stats"]
  for step in range(3):
    x_step, _ = _data(batch=8, seed=step)
    params, stats, loss = train_step(params, stats, x_step, mask, step)
    assert np.isfinite(float(loss))
  assert len(traces) == 1


def test_kmeans_init_runs_under_jit_with_sharded_batch(conv):
  _, model, x, mask, fitted = conv
  stats = dict(fitted["vq_stats"])
  stats["quantizer"] = dict(stats["quantizer"], initialised=jnp.array(False))
  # Auto axes, as dfe_jax.training.device_mesh.make_mesh builds them for the trainer.
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  mask_sharded = jax.device_put(mask, NamedSharding(mesh, P("data")))
  init = jax.jit(lambda v, x, m: models.init_codebooks(model, v, x, m, jax.random.PRNGKey(1)))
  sharded = init(dict(fitted, vq_stats=stats), x_sharded, mask_sharded)
  stats = sharded["vq_stats"]["quantizer"]
  assert bool(stats["initialised"])
  # The same fit as on one device (the fixture ran it unsharded with the same key).
  assert_tree_close_f32(sharded["vq_stats"], fitted["vq_stats"], SMOKE_MODEL_RTOL)
  # Every valid latent was counted once per level: the counts are global, not per device.
  valid_latents = int(jnp.sum(jnp.any(mask.reshape(8, 4, 4), -1)))
  assert float(stats["ema_count"].sum()) == pytest.approx(3 * valid_latents)
  # A train step (EMA update, dead-code restart) on the sharded batch matches one device too.
  train = jax.jit(lambda v, x, m: model.apply(v, x, m, train=True,
                                               rngs={"vq": jax.random.PRNGKey(4)},
                                               mutable=["vq_stats"]))
  (_, aux_s), stats_s = train(fitted, x_sharded, mask_sharded)
  (_, aux_l), stats_l = train(fitted, x, mask)
  assert_close_f32(aux_s["latents"], aux_l["latents"], SMOKE_MODEL_RTOL)
  # Codes, their counts and EMA statistics agree, except for the codes of a nearest-code tie
  # that float rounding flipped between the two programs.
  codes_s, codes_l = (np.asarray(a["codes"]).reshape(-1, a["codes"].shape[-1])
                      for a in (aux_s, aux_l))
  assert_codes_equal_except_ties(codes_s, codes_l, aux_s["latents"].reshape(len(codes_s), -1),
                                 aux_l["latents"].reshape(len(codes_l), -1),
                                 fitted["vq_stats"]["quantizer"]["codebook"])
  kept = ~codes_of_differing_rows(codes_s, codes_l, aux_l["vq/counts_LK"].shape[-1])
  np.testing.assert_array_equal(np.asarray(aux_s["vq/counts_LK"])[:, kept],
                                np.asarray(aux_l["vq/counts_LK"])[:, kept])
  per_code = lambda stats: jax.tree.map(lambda a: np.asarray(a)[:, kept] if np.ndim(a) > 1 else a,
                                        stats)
  assert_tree_close_f32(per_code(stats_s), per_code(stats_l), SMOKE_MODEL_RTOL)


def test_encode_decode_round_trip_and_prefix_metrics(conv):
  _, model, x, mask, variables = conv
  recon, aux = jax.jit(lambda v: model.apply(v, x, mask))(variables)
  tokens = jax.jit(lambda v: model.apply(v, x, mask, method="encode"))(variables)
  np.testing.assert_array_equal(tokens["codes"], aux["codes"])
  assert tokens["codes"].dtype == jnp.int32 and np.all(np.asarray(tokens["codes"]) >= 0)
  decode = jax.jit(lambda v, c: model.apply(v, c, method="decode_codes"))
  assert_close_f32(decode(variables, tokens["codes"]), recon, SMOKE_MODEL_RTOL)
  # Skipping every level after the first reproduces the one-level prefix metric. An MSE's
  # relative error is at most 2x its reconstruction's while the error is as large as the
  # reconstruction (an untrained model), and the mean of 8 x 16 x 53 squares adds little.
  first_only = decode(variables, tokens["codes"].at[..., 1:].set(-1))
  prefix1 = losses.masked_mse(first_only, x, mask)
  mse_rtol = 2 * SMOKE_MODEL_RTOL + f32_rtol(x.size)
  assert float(prefix1) == pytest.approx(float(aux["recon/prefix1_mse"]), rel=mse_rtol)
  assert float(aux["recon/prefix3_mse"]) == pytest.approx(float(losses.masked_mse(recon, x, mask)),
                                                          rel=mse_rtol)


def test_frame_transformer_gives_one_code_row_per_frame_without_context():
  model = models.get_model(_tiny("dfe_paper").model)
  x, mask = _data(batch=2, frames=5)
  variables = _fitted(model, x, mask)
  encode = jax.jit(lambda v, x: model.apply(v, x, mask, method="encode"))
  tokens = encode(variables, x)
  assert tokens["codes"].shape == (2, 5, 3)
  moved = encode(variables, x.at[:, 2].add(5.0))
  assert_close_f32(np.delete(np.asarray(moved["latents"]), 2, axis=1),
                   np.delete(np.asarray(tokens["latents"]), 2, axis=1), SMOKE_MODEL_RTOL)
  recon, aux = jax.jit(lambda v: model.apply(v, x, mask))(variables)
  assert recon.shape == x.shape and "recon/prefix3_mse" in aux


def _init_fit_and_train(model, x, mask):
  """init -> init_codebooks -> one train-mode apply, compiled as one program."""
  def run(x, mask):
    variables = model.init({"params": jax.random.PRNGKey(0)}, x, mask)
    variables = models.init_codebooks(model, variables, x, mask, jax.random.PRNGKey(1))
    return model.apply(variables, x, mask, train=True, rngs={"vq": jax.random.PRNGKey(2)},
                       mutable=["vq_stats"])
  return jax.jit(run)(x, mask)


def test_continuous_baseline_has_latents_and_no_codes():
  model = models.get_model(_tiny("continuous").model)
  x, mask = _data()
  (recon, aux), updates = _init_fit_and_train(model, x, mask)
  assert recon.shape == x.shape
  assert aux["codes"].shape == (4, 4, 0) and aux["latents"].shape == (4, 4, 8)
  assert float(aux["commit_loss"]) == 0.0
  assert bool(updates["vq_stats"]["quantizer"]["initialised"])


def _equations(jaxpr):
  """Every equation of a jaxpr and of the jaxprs nested in its equations (jit, custom VJPs)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        if isinstance(sub, jax_core.ClosedJaxpr):
          yield from _equations(sub.jaxpr)
        elif isinstance(sub, jax_core.Jaxpr):
          yield from _equations(sub)


def test_bfloat16_training_keeps_state_and_quantizer_in_float32():
  # The plain convs, as accelerators run bfloat16 (tests/test_bfloat16.py trains with "auto"); a
  # one-block model with 40 codes, a size no other array of it has, so the products with the
  # codebook are the matmuls with a 40-wide output.
  config = _tiny(**{"dtype": "bfloat16", "conv_impl": "xla", "downsample_log2": 1,
                    "conv.dilations": (1,), "quantizer.codebook_size": 40})
  model = models.get_model(config.model)
  optimizer = train_step.make_optimizer(config)
  x, mask = _data()
  batch = {"x": x, "mask": mask}

  def fit_and_train(rng):
    state = train_step.create_state(model, optimizer, rng, window_frames=16, num_features=53)
    state = train_step.init_codebooks(model, state, batch)
    return train_step.train_step(model, optimizer, config.loss, feature_spaces.FLAME53, state,
                                 batch)

  state, metrics = jax.jit(fit_and_train)(jax.random.PRNGKey(0))
  assert np.isfinite(float(metrics["train/loss/total"]))
  assert bool(state.vq_stats["quantizer"]["initialised"])
  # Parameters, Adam's moments, the codebook and its EMA statistics stay float32.
  for leaf in jax.tree.leaves((state.params, state.opt_state, state.vq_stats)):
    assert leaf.dtype in (jnp.float32, jnp.int32, jnp.bool_), leaf.dtype
  (recon, aux), _ = jax.eval_shape(lambda v: model.apply(
      v, x, mask, train=True, mutable=["vq_stats"], rngs={"vq": jax.random.PRNGKey(1)}),
                                   {"params": state.params, "vq_stats": state.vq_stats})
  assert recon.dtype == jnp.float32 and aux["latents"].dtype == jnp.float32
  # The convs compute in bfloat16, and every product with the codebook (distances, k-means) is
  # float32.
  equations = list(_equations(jax.make_jaxpr(fit_and_train)(jax.random.PRNGKey(0)).jaxpr))
  convs = [e for e in equations if e.primitive.name == "conv_general_dilated"]
  assert convs and all(v.aval.dtype == jnp.bfloat16 for e in convs for v in e.invars)
  with_codes = [e for e in equations if e.primitive.name == "dot_general"
                and 40 in e.outvars[0].aval.shape]
  assert with_codes and all(v.aval.dtype == jnp.float32 for e in with_codes for v in e.invars)


def test_float32_override_computes_a_bfloat16_config_as_the_float32_model(conv):
  config, _, x, mask, variables = conv
  bf16 = ml_collections.ConfigDict(config.model.to_dict())
  bf16.dtype = "bfloat16"
  restored = models.get_model(bf16, dtype="float32")  # As the tokenizer restores a model.
  assert restored.encoder.dtype == restored.decoder.dtype == jnp.float32
  assert models.get_model(bf16).encoder.dtype == jnp.bfloat16
  encode = lambda model: jax.jit(lambda v: model.apply(v, x, mask, method="encode"))(variables)
  jax.tree.map(np.testing.assert_array_equal, encode(restored),
               encode(models.get_model(config.model)))


def test_encoder_gets_gradient_through_the_quantizer(conv):
  _, model, x, mask, variables = conv

  def recon_loss(params):
    (recon, _), _ = model.apply(dict(variables, params=params), x, mask, train=True,
                                rngs={"vq": jax.random.PRNGKey(0)}, mutable=["vq_stats"])
    return losses.masked_mse(recon, x, mask)

  grads = jax.jit(jax.grad(recon_loss))(variables["params"])
  encoder_grad = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["encoder"]))
  assert encoder_grad > 0


def test_configs_build_and_describe_the_reference_model():
  # The default has one latent step per frame (docs/ablation.md); `reference` is the PyTorch
  # speed reference's twin, 4x downsampling, and otherwise the same model.
  assert _load_config("rvq", arg=None).model.downsample_log2 == 0
  config = _load_config("rvq", arg="reference")
  m = config.model
  assert (m.feature_dim, m.width, m.downsample_log2, tuple(m.conv.dilations), m.code_dim) == (
      53, 256, 2, (9, 3, 1), 128)
  assert (m.quantizer.num_levels, m.quantizer.codebook_size, m.quantizer.shared_codebook,
          m.quantizer.learning) == (6, 512, True, "ema")
  assert config.loss.velocity_weight > 0
  for name in ("rvq", "dfe_paper", "continuous"):
    models.get_model(_load_config(name).model)
  bogus = _tiny()
  bogus.model.name = "bogus"
  with pytest.raises(ValueError):
    models.get_model(bogus.model)


def test_auto_picks_the_xla_cpu_kernels_on_the_cpu_backend_only():
  assert models.resolve_conv_impl("auto", backend="cpu") == "xla_cpu"
  for backend in ("gpu", "cuda", "rocm", "tpu"):
    assert models.resolve_conv_impl("auto", backend=backend) == "xla"
  for conv_impl in ("xla", "xla_cpu"):
    assert models.resolve_conv_impl(conv_impl, backend="tpu") == conv_impl
  with pytest.raises(ValueError, match="conv_impl must be one of"):
    models.resolve_conv_impl("cudnn")
  config = _tiny()
  assert config.model.conv_impl == "auto" and jax.default_backend() == "cpu"
  auto = models.get_model(config.model)
  assert (type(auto.encoder), type(auto.decoder)) == (cpu_temporal_conv.Encoder,
                                                      cpu_temporal_conv.Decoder)
  config.model.conv_impl = "xla"
  plain = models.get_model(config.model)
  assert (type(plain.encoder), type(plain.decoder)) == (temporal_conv.Encoder,
                                                        temporal_conv.Decoder)
  # A config.json written before the field existed builds "auto".
  older = ml_collections.ConfigDict(config.model.to_dict())
  del older["conv_impl"]
  assert type(models.get_model(older).encoder) is cpu_temporal_conv.Encoder
  # Only the switch in models/__init__.py imports the CPU kernels.
  package = pathlib.Path(models.__file__).parent
  importers = sorted(
      str(path.relative_to(package)) for path in package.rglob("*.py")
      if "xla_cpu" not in path.parts for node in ast.walk(ast.parse(path.read_text()))
      if isinstance(node, ast.ImportFrom) and node.module == "dfe_jax.models"
      and any(alias.name == "xla_cpu" for alias in node.names))
  assert importers == ["__init__.py"]


@pytest.mark.parametrize("arg", [None, "smoke"], ids=["default", "smoke"])
def test_xla_cpu_kernels_have_the_plain_models_parameters_values_and_gradients(arg):
  config = _load_config("rvq", arg)
  built = {}
  for conv_impl in ("xla", "xla_cpu"):
    config.model.conv_impl = conv_impl
    built[conv_impl] = models.get_model(config.model)
  x, mask = _data(batch=2, frames=32)
  init = lambda model: jax.jit(lambda: model.init({"params": jax.random.PRNGKey(0)}, x, mask,
                                                  train=True)["params"])()
  params = init(built["xla"])
  # Same names, shapes and initial values: a checkpoint of either restores into the other.
  jax.tree.map(np.testing.assert_array_equal, init(built["xla_cpu"]), params)
  cotangent = jax.random.normal(jax.random.PRNGKey(1), x.shape)

  def autoencode_and_pull_back(model):
    """Encoder then decoder and the gradients of <recon, cotangent>; the quantizer is the same
    code in both and left out, as its argmin turns a rounding difference into another code."""
    def recon(params, x):
      return model.apply({"params": params}, x, mask,
                         method=lambda m, x, mask: m.decoder(m.encoder(x, mask)))

    def run(params, x):
      y, pullback = jax.vjp(recon, params, x)
      return y, pullback(cotangent)
    return jax.jit(run)(params, x)

  # A chain of one sum per conv (the longest over 3 taps x max(width, features) channels), one
  # more for the kernel gradients' sums and one for the composed decoder kernel.
  num_convs = sum(1 for path, _ in jax.tree_util.tree_leaves_with_path(params)
                  if path[-1].key == "kernel")
  rtol = f32_rtol(config.model.conv.kernel_size * max(config.model.width, 53), num_convs + 2)
  assert_tree_close_f32(autoencode_and_pull_back(built["xla_cpu"]),
                        autoencode_and_pull_back(built["xla"]), rtol)


def test_relu_equals_jax_nn_relu_in_values_and_gradients():
  x = jnp.concatenate([jnp.array([-2.0, -0.0, 0.0, 1e-30, 3.0, jnp.nan]),
                       jax.random.normal(jax.random.PRNGKey(0), (64,))])
  w = jax.random.normal(jax.random.PRNGKey(1), x.shape)
  for fn in (lambda f, x: f(x), jax.jit(lambda f, x: f(x), static_argnums=0)):
    np.testing.assert_array_equal(fn(activations.relu, x), fn(jax.nn.relu, x))
  weighted = lambda f: jax.jit(jax.grad(lambda x: jnp.nansum(f(x) * w)))
  np.testing.assert_array_equal(weighted(activations.relu)(x), weighted(jax.nn.relu)(x))
  _, tangent = jax.jvp(activations.relu, (x,), (w,))
  np.testing.assert_array_equal(tangent, jnp.where(x > 0, w, 0.0))
  # The one documented difference: inf - inf is NaN.
  assert np.isnan(activations.relu(jnp.inf)) and np.isnan(activations.relu(-jnp.inf))


@pytest.mark.parametrize("conv_cls", [temporal_conv.Conv, cpu_temporal_conv.Conv],
                         ids=["xla", "xla_cpu"])
@pytest.mark.parametrize("kernel_size,stride,dilation,upsample,frames", [
    (3, 1, 1, 1, 9), (3, 1, 3, 1, 9), (1, 1, 1, 1, 9),  # plain, dilated, pointwise
    (4, 2, 1, 1, 12), (4, 2, 1, 1, 13), (3, 2, 1, 1, 9), (5, 3, 1, 1, 10),  # strided
    (3, 1, 1, 2, 7), (5, 1, 1, 2, 7), (3, 1, 1, 3, 7)])  # upsampled
def test_conv_equals_flax_conv_in_values_and_gradients(conv_cls, kernel_size, stride, dilation,
                                                       upsample, frames):
  h = jax.random.normal(jax.random.PRNGKey(0), (2, frames, 6))
  ours = conv_cls(5, kernel_size, stride, dilation, upsample)
  pad = conv1d.same_padding(kernel_size, dilation, stride)
  flax_conv = nn.Conv(5, (kernel_size,), strides=(stride,), kernel_dilation=(dilation,),
                      padding=(pad,))
  upsampled = lambda x: jnp.repeat(x, upsample, axis=1)
  params = ours.init(jax.random.PRNGKey(1), h)
  # Same names, shapes and initial values as nn.Conv, so checkpoints carry over.
  jax.tree.map(np.testing.assert_array_equal, params,
               flax_conv.init(jax.random.PRNGKey(1), upsampled(h)))

  def value_and_grads(apply):
    return jax.value_and_grad(lambda p, x: jnp.sum(jnp.sin(apply(p, x))), argnums=(0, 1))(
        params, h)

  got = value_and_grads(ours.apply)
  want = value_and_grads(lambda p, x: flax_conv.apply(p, upsampled(x)))
  assert_tree_close_f32(got, want, _sin_sum_rtol(flax_conv.apply(params, upsampled(h)), depth=2))


def _sin_sum_rtol(y, depth, sum_length=64):
  """rtol of sum(sin(y)) and its gradients when y is a float32 result of `depth` sums of <= 64
  terms (these tests' convs and their backward passes): sin turns y's relative rounding into an
  absolute one of that times max|y|."""
  return f32_rtol(sum_length, depth) * max(1.0, float(jnp.max(jnp.abs(y))))


@pytest.mark.parametrize("up_kernel_size,kernel_size,factor,frames", [
    (3, 3, 2, 7), (3, 3, 2, 1), (5, 3, 2, 4), (3, 5, 3, 3), (3, 1, 2, 5), (4, 3, 2, 6)])
def test_upsample_conv_then_conv_is_one_conv_in_values_and_gradients(up_kernel_size, kernel_size,
                                                                      factor, frames):
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  args = (jax.random.normal(keys[0], (2, frames, 6)),
          jax.random.normal(keys[1], (up_kernel_size, 6, 5)),
          jax.random.normal(keys[2], (5,)), jax.random.normal(keys[3], (kernel_size, 5, 4)))

  def two_convs(x, up_kernel, up_bias, kernel):
    return cpu_conv1d.conv1d(cpu_conv1d.upsample_conv1d(x, up_kernel, factor) + up_bias, kernel)

  def composed(x, up_kernel, up_bias, kernel):
    return cpu_conv1d.upsample_conv1d_then_conv1d(x, up_kernel, up_bias, kernel, factor)

  def value_and_grads(fn):
    return jax.value_and_grad(lambda *a: jnp.sum(jnp.sin(fn(*a))), argnums=(0, 1, 2, 3))(*args)

  assert composed(*args).shape == (2, frames * factor, 4)
  assert_close_f32(composed(*args), two_convs(*args), f32_rtol(64, depth=2))
  assert_tree_close_f32(value_and_grads(composed), value_and_grads(two_convs),
                        _sin_sum_rtol(two_convs(*args), depth=3))


class _UpsampleThenConv(nn.Module):
  compose: bool

  @nn.compact
  def __call__(self, x_BTC):
    upsample, conv = cpu_temporal_conv.Conv(5, 3, upsample=2), cpu_temporal_conv.Conv(4, 3)
    return upsample.followed_by(conv, x_BTC) if self.compose else conv(upsample(x_BTC))


def test_followed_by_keeps_both_convs_parameters_and_their_result():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 3))
  params = _UpsampleThenConv(compose=False).init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(np.shape, params) == jax.tree.map(
      np.shape, _UpsampleThenConv(compose=True).init(jax.random.PRNGKey(1), x))
  assert_close_f32(_UpsampleThenConv(compose=True).apply(params, x),
                   _UpsampleThenConv(compose=False).apply(params, x), f32_rtol(64, depth=2))
  with pytest.raises(ValueError, match="composes an upsampling Conv"):
    cpu_temporal_conv.Conv(5, 3).followed_by(cpu_temporal_conv.Conv(4, 3), x)
