"""Trainer: exact resume, 8 devices = 1 device, NaN guard, clear config errors, run files."""

import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from dfe_jax import models
from dfe_jax.data import input_pipeline
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import device_batches
from dfe_jax.training import device_mesh
from dfe_jax.training import metric_writer
from dfe_jax.training import train_lib
from dfe_jax.training import train_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "configs"))
import rvq  # pylint: disable=g-import-not-at-top,wrong-import-position


def tiny_config(data_dir, **overrides):
  """configs/rvq.py:smoke cut further: these tests check the loop, not the model."""
  config = rvq.get_config("smoke")
  config.model.conv.dilations = (1,)
  config.model.quantizer.num_levels = 2
  config.model.quantizer.codebook_size = 16
  config.data_dir = data_dir
  config.total_steps = 8
  config.checkpoint_every_steps = 4
  config.eval_every_steps = 4
  config.log_every_steps = 1
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _params(workdir):
  return jax.tree.leaves(jax.device_get(trained_model.load(workdir).variables))


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(small_shards, tmp_path, monkeypatch):
  train_lib.train_and_evaluate(tiny_config(small_shards), str(tmp_path / "full"))
  original_write = metric_writer.MetricWriter.write

  def write_then_preempt(self, step, metrics):
    original_write(self, step, metrics)
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)  # what a preempted TPU VM receives

  monkeypatch.setattr(metric_writer.MetricWriter, "write", write_then_preempt)
  train_lib.train_and_evaluate(tiny_config(small_shards), str(tmp_path / "split"))
  monkeypatch.setattr(metric_writer.MetricWriter, "write", original_write)
  stopped_at = trained_model.load(str(tmp_path / "split")).step
  assert 0 < stopped_at < 8
  train_lib.train_and_evaluate(tiny_config(small_shards), str(tmp_path / "split"))
  assert trained_model.load(str(tmp_path / "split")).step == 8
  for a, b in zip(_params(str(tmp_path / "full")), _params(str(tmp_path / "split"))):
    np.testing.assert_array_equal(a, b)


def test_resume_after_a_kill_leaves_metrics_as_an_uninterrupted_run(small_shards, tmp_path,
                                                                     monkeypatch):
  """A run killed (kill -9) after logging past its last checkpoint: the resumed run's
  metrics.jsonl has each step once, with the uninterrupted run's values."""
  train_lib.train_and_evaluate(tiny_config(small_shards), str(tmp_path / "full"))
  original_write = metric_writer.MetricWriter.write

  def write_then_preempt(self, step, metrics):
    original_write(self, step, metrics)
    if step == 6:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(metric_writer.MetricWriter, "write", write_then_preempt)
  workdir = tmp_path / "killed"
  train_lib.train_and_evaluate(tiny_config(small_shards), str(workdir))
  monkeypatch.setattr(metric_writer.MetricWriter, "write", original_write)
  # What kill -9 leaves: rows logged up to step 6, the last finished checkpoint at step 4.
  stopped_at = trained_model.load(str(workdir)).step
  assert stopped_at > 4
  shutil.rmtree(workdir / "checkpoints" / str(stopped_at))
  assert trained_model.load(str(workdir)).step == 4
  train_lib.train_and_evaluate(tiny_config(small_shards), str(workdir))

  def rows(run):
    return [json.loads(l) for l in open(tmp_path / run / "metrics.jsonl")]
  steps = [r["step"] for r in rows("killed") if "train/loss/total" in r]
  assert steps == list(range(1, 9))
  for a, b in zip(rows("killed"), rows("full")):
    assert a["step"] == b["step"] and a.get("train/loss/total") == b.get("train/loss/total")


def test_eight_devices_match_one_device(small_shards, tmp_path):
  config = tiny_config(small_shards, total_steps=4, eval_every_steps=4)
  train_lib.train_and_evaluate(config, str(tmp_path / "one"), mesh=device_mesh.make_mesh(1))
  train_lib.train_and_evaluate(config, str(tmp_path / "eight"), mesh=device_mesh.make_mesh(8))
  # Adam turns a gradient component at rounding level into a step of up to the learning rate,
  # so the floor is absolute, tied to the updates (2e-5: 0.5% of 4 warm-up steps' 4e-3), not to
  # each parameter's scale. (Measured on a 2-core EPYC: at most 1% of this tolerance.)
  for a, b in zip(_params(str(tmp_path / "one")), _params(str(tmp_path / "eight"))):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_workdir_holds_config_provenance_dataset_metrics_and_best(small_shards, tmp_path,
                                                                 monkeypatch):
  monkeypatch.chdir(tmp_path)
  final = train_lib.train_and_evaluate(tiny_config(small_shards), "run")  # a relative workdir
  workdir = str(tmp_path / "run")
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["config"]["model"]["feature_dim"] == 53
  assert "jax" in config["versions"] and config["git_revision"]
  assert json.load(open(os.path.join(workdir, "dataset.json"))) == json.load(
      open(os.path.join(small_shards, "dataset.json")))
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [l["step"] for l in lines if "train/loss/total" in l] == list(range(1, 9))
  evals = [l for l in lines if "eval/recon_cosine" in l]
  assert [l["step"] for l in evals] == [4, 8]
  assert final["eval/frames"] == json.load(open(os.path.join(small_shards, "dataset.json")))[
      "splits"]["val"]["num_valid_frames"]
  assert "eval/vq/level0/perplexity" in final and "eval/recon/prefix1_mse" in final
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  best = trained_model.load(workdir, best=True)
  best_cos = max(l["eval/recon_cosine"] for l in evals)
  assert [l["step"] for l in evals if l["eval/recon_cosine"] == best_cos] == [best.step]


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    small_shards, tmp_path):
  workdir = str(tmp_path / "nan")
  config = tiny_config(small_shards, learning_rate=1e30, warmup_steps=1, grad_clip_norm=1e30,
                       checkpoint_every_steps=1)
  with pytest.raises(train_lib.NonFiniteLossError, match=r"at step \d+"):
    train_lib.train_and_evaluate(config, workdir)
  kept = trained_model.load(workdir)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(jax.device_get(kept.variables)))


def test_batch_not_divisible_by_devices_is_a_clear_error(small_shards, tmp_path):
  with pytest.raises(ValueError, match="not divisible by the 8 devices"):
    train_lib.train_and_evaluate(tiny_config(small_shards, global_batch_size=12),
                                 str(tmp_path / "x"))
  assert not (tmp_path / "x").exists()


def _train_cli(*flags, env=None):
  return subprocess.run([sys.executable, "-m", "dfe_jax.train", *flags], capture_output=True,
                        text=True, cwd=REPO, env=env, timeout=600)


def test_cpu_runs_without_the_huge_page_tunable_get_a_hint():
  hint = train_lib.cpu_allocator_hint("cpu", {})
  assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in hint
  assert train_lib.cpu_allocator_hint("cpu", {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) is None
  assert train_lib.cpu_allocator_hint(
      "cpu", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=1:glibc.malloc.hugetlb=2"}) is None
  assert train_lib.cpu_allocator_hint("tpu", {}) is None


def test_cli_reports_unknown_keys_and_missing_dataset_in_one_line(tmp_path):
  unknown = _train_cli("--config=configs/rvq.py:smoke", "--config.no_such_key=1",
                       f"--workdir={tmp_path}/a")
  assert unknown.returncode != 0 and "no_such_key" in unknown.stderr
  missing = _train_cli("--config=configs/rvq.py:smoke", f"--data_dir={tmp_path}/nowhere",
                       f"--workdir={tmp_path}/b")
  assert missing.returncode != 0
  assert missing.stderr.strip().splitlines()[-1].startswith("train: error: ")
  assert "dataset.json" in missing.stderr.strip().splitlines()[-1]


def test_a_missing_eval_split_stops_before_training_in_one_line(small_shards, tmp_path):
  done = _train_cli("--config=configs/rvq.py:smoke", f"--data_dir={small_shards}",
                    "--config.eval_split=holdout", f"--workdir={tmp_path}/run")
  assert done.returncode != 0 and "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1] == (
      "train: error: dataset has no 'holdout' split (has train, val, test)")
  assert not (tmp_path / "run").exists()


def _single_process_reference(config, data_dir, num_processes):
  """Final params of one process training on the global batches that `num_processes` processes
  would assemble (each process's local batch, stacked in process order)."""
  info = input_pipeline.load_info(data_dir)
  config = train_lib.resolve_config(config, info)
  mesh = device_mesh.make_mesh(num_processes)
  model, optimizer = models.get_model(config.model), train_step.make_optimizer(config)
  local = config.global_batch_size // num_processes
  streams = [input_pipeline.train_dataset(
      data_dir, info, window_frames=config.window_frames, window_stride=config.window_stride,
      local_batch_size=local, seed=config.seed, shuffle_buffer=config.shuffle_buffer,
      process_index=p, process_count=num_processes).as_numpy_iterator()
             for p in range(num_processes)]
  batches = (device_batches.to_global({k: np.concatenate([b[k] for b in parts]) for k in parts[0]},
                                      mesh) for parts in zip(*streams))
  state = train_step.create_state(model, optimizer, jax.random.PRNGKey(config.seed),
                                  window_frames=config.window_frames,
                                  num_features=info["num_features"])
  first = next(batches)
  state = jax.jit(functools.partial(train_step.init_codebooks, model))(state, first)
  step = jax.jit(functools.partial(train_step.train_step, model, optimizer, config.loss,
                                   tuple(info["feature_names"])))
  for batch in itertools.chain([first], itertools.islice(batches, config.total_steps - 1)):
    state, _ = step(state, batch)
  return jax.tree.leaves(jax.device_get({"params": state.params, "vq_stats": state.vq_stats}))


def test_two_local_processes_match_one_process_on_the_same_global_batches(small_shards,
                                                                           tmp_path):
  config_flags = ["--config=configs/rvq.py:smoke", "--config.total_steps=4",
                  "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4",
                  "--config.model.conv.dilations=(1,)", "--config.model.quantizer.num_levels=2",
                  "--config.model.quantizer.codebook_size=16", f"--data_dir={small_shards}"]
  env = dict(os.environ, PORT=str(23000 + os.getpid() % 1000), JAX_PLATFORMS="cpu")
  run = subprocess.run(["bash", "launch/multiprocess_local.sh", "2", *config_flags,
                        f"--workdir={tmp_path}/multi"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "2 processes" in run.stderr
  expected = _single_process_reference(tiny_config(small_shards, total_steps=4), small_shards, 2)
  for a, b in zip(expected, _params(str(tmp_path / "multi"))):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
