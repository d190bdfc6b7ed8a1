"""The speed benchmarks measure the reference model and count FLOPs as the reference does."""

import functools
import mmap

from absl import app
import jax
import numpy as np
import pytest

from benchmarks import conv_impl_ab
from benchmarks import conv_layers
from benchmarks import fused_transposes
from benchmarks import reference
from benchmarks import train_step as train_step_bench

from dfe_jax import models
from dfe_jax.training import train_step


def test_reference_config_has_the_torch_models_parameters_and_flops():
  config = reference.config()
  model = models.get_model(config.model)
  optimizer = train_step.make_optimizer(config)
  state = jax.eval_shape(functools.partial(
      train_step.create_state, model, optimizer, window_frames=config.window_frames,
      num_features=config.model.feature_dim), jax.random.PRNGKey(0))
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  assert num_params == reference.PARAMS
  forward, train = reference.analytic_flops_per_frame(config.model)
  assert train == 3 * forward == reference.TRAIN_FLOPS_PER_FRAME


def test_conv_layers_cover_every_conv_of_the_reference_model():
  config = reference.config()
  layers = conv_layers.conv_layers(config.model, batch=2, frames=config.window_frames)
  # 33 convs, the decoder's last upsampling conv and the one after it timed as one layer.
  assert len(layers) == 32 and layers[0].name == "encoder/stem"
  assert [layer.name for layer in layers if layer.then] == ["decoder/stage1_up+hidden"]
  assert layers[0].input_shape == (2, config.window_frames, config.model.feature_dim)
  forward, _ = reference.analytic_flops_per_frame(config.model)
  q = config.model.quantizer
  rvq_flops = (2 * q.codebook_size * config.model.code_dim * q.num_levels
               / 2 ** config.model.downsample_log2)
  per_frame = sum(conv_layers.conv_flops(layer) for layer in layers) / (2 * config.window_frames)
  assert per_frame == forward - rvq_flops


def test_conv_impl_ab_quick_times_both_steps_alternately_on_the_same_computation():
  config = conv_impl_ab.quick_config()
  result = conv_impl_ab.compare(config, "xla_cpu", "auto", rounds=2, round_steps=1,
                                warmup_steps=0)
  assert config.model.conv_impl == "auto"  # The caller's config is left as it was.
  assert len(result["speed_ratio_all"]) == 2 and result["speed_ratio_median"] > 0
  assert all(len(result[side]["seconds_per_step_all"]) == 2 for side in ("baseline", "candidate"))
  # On CPU "auto" is the XLA:CPU kernels: the same program, so the same first step, bit for bit.
  assert result["baseline"]["conv_impl"] == result["candidate"]["conv_impl"] == "xla_cpu"
  assert result["baseline"]["first_loss"] == result["candidate"]["first_loss"]


def test_conv_layers_times_all_three_passes_of_a_layer():
  layer = conv_layers.Layer("up", (2, 8, 4), features=6, kernel_size=3, stride=1, dilation=1,
                            upsample=2)
  composed = layer._replace(then=(5, 3))
  for timed in (layer, composed):
    seconds = conv_layers.time_layer(timed, repeats=1)
    assert set(seconds) == set(conv_layers.PASSES) and all(s > 0 for s in seconds.values())


def test_fused_transposes_compute_what_each_producer_names():
  rng = np.random.default_rng(0)
  h, dy = rng.standard_normal((2, 3, 4, 5), np.float32)
  bias = rng.standard_normal(5, np.float32)
  inputs = {"stored": h, "relu": np.maximum(h, 0), "bias_relu": np.maximum(h + bias, 0),
            "relu_no_constant": np.maximum(h, 0)}
  assert set(inputs) == set(fused_transposes.PRODUCERS)
  for name, x in inputs.items():
    transpose, kernel_grad = fused_transposes.programs(fused_transposes.PRODUCERS[name])
    np.testing.assert_allclose(transpose(h, bias, dy), np.transpose(x, (2, 0, 1)), rtol=1e-6)
    np.testing.assert_allclose(kernel_grad(h, bias, dy), np.einsum("btc,bto->co", x, dy),
                               rtol=1e-5, atol=1e-5)
  seconds, matmul = fused_transposes.time_producers((2, 3, 4), repeats=1)
  assert set(seconds) == set(inputs) and matmul > 0
  assert all(t > 0 and g > 0 for t, g in seconds.values())


def test_reference_env_default_starts_the_worker_without_glibc_tunables():
  environ = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "PATH": "/bin"}
  assert train_step_bench.reference_environ("same", environ) == environ
  assert train_step_bench.reference_environ("default", environ) == {"PATH": "/bin"}
  assert environ["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"  # The caller's dict is kept.


def test_trace_dir_is_checked_before_benchmarking(tmp_path):
  train_step_bench.check_trace_dir(str(tmp_path / "trace"))
  assert (tmp_path / "trace").is_dir()
  (tmp_path / "file").write_text("")
  with pytest.raises(app.UsageError, match="cannot be written: Not a directory"):
    train_step_bench.check_trace_dir(str(tmp_path / "file" / "trace"))


def test_kernel_work_counts_the_page_faults_of_touching_fresh_memory():
  pages = 2048
  before = train_step_bench.kernel_work()
  with mmap.mmap(-1, pages * mmap.PAGESIZE) as block:  # Anonymous, no huge pages asked for.
    for page in range(pages):
      block[page * mmap.PAGESIZE] = 1
  rounds = [train_step_bench.kernel_work_since(before)]
  faults, kernel_seconds = train_step_bench.per_step_medians(rounds, steps=2)
  assert faults >= 0.9 * pages / 2 and kernel_seconds >= 0
