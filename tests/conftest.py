"""Test set-up: 8 fake CPU devices for JAX, no GPUs for TensorFlow, small synthetic corpora."""

import gc
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_num_cpu_devices", 8)
# Tests train the same tiny models many times: compile each program once per session.
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(os.environ.get("TMPDIR", "/tmp"), f"dfe_jax_xla_cache_{os.getuid()}"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order

from dfe_jax.data import ingest_lib  # pylint: disable=g-import-not-at-top
from dfe_jax.synthetic import synth_lib  # pylint: disable=g-import-not-at-top

SMALL_CORPUS = synth_lib.CorpusSpec(num_subjects=10, videos_per_subject=2, video_seconds=12.0,
                                    seed=3)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
  """A 20-video synthetic corpus (10 subjects x 2 videos x 12 s at 25 fps); its manifest path."""
  out = tmp_path_factory.mktemp("corpus")
  return synth_lib.write_corpus(SMALL_CORPUS, str(out), overwrite=True)


@pytest.fixture(scope="session")
def small_shards(small_corpus, tmp_path_factory):
  """The small corpus ingested with short chunks, 2 shards a split; its folder."""
  out = str(tmp_path_factory.mktemp("shards"))
  ingest_lib.ingest(small_corpus, out, ingest_lib.IngestOptions(
      num_shards=2, chunk_frames=128, val_fraction=0.2, test_fraction=0.1, num_processes=1))
  return out


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):  # pylint: disable=unused-argument
  """Frees the session's compiled programs while the worker still runs its tests' time budget:
  pytest-xdist interrupts a worker whose shutdown takes over 5 s, and freeing them inside
  Python's last garbage collections took that long (a KeyboardInterrupt traceback at the end)."""
  jax.clear_caches()
  gc.collect()
