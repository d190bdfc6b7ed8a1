"""Trains the RVQ-VAE: `python -m dfe_jax.train --config=configs/rvq.py --workdir=DIR`.

Dotted overrides change single fields (`--config.total_steps=100`); `configs/rvq.py:smoke`
passes an argument to the config. Multi-host: `--distributed` (or DFE_DISTRIBUTED=1) calls
`jax.distributed.initialize()`, which reads the cluster from the TPU VM, SLURM or the
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment (see
launch/multiprocess_local.sh).
"""

import os

from absl import flags
from absl import logging
from ml_collections import config_flags

from dfe_jax import startup

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs).",
                               required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Shard folder; overrides config.data_dir.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", os.environ.get("DFE_DISTRIBUTED") == "1",
                                 "Call jax.distributed.initialize() (multi-host runs).")


def initialize_distributed():
  """Joins the multi-process runtime: explicit environment first, else JAX's auto-detection."""
  import jax  # pylint: disable=g-import-not-at-top
  num_processes, process_id = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
  if num_processes and process_id:
    jax.distributed.initialize(num_processes=int(num_processes), process_id=int(process_id))
  else:
    jax.distributed.initialize()


def main(argv):
  # Imported after flag parsing, so that `--help` answers without loading JAX or TensorFlow.
  import jax  # pylint: disable=g-import-not-at-top
  from dfe_jax.training import train_lib  # pylint: disable=g-import-not-at-top
  del argv
  if _DISTRIBUTED.value:
    initialize_distributed()
  config = _CONFIG.value
  if config is None:
    startup.fail("train", "--config is required, e.g. --config=configs/rvq.py")
  if _DATA_DIR.value:
    with config.unlocked():
      config.data_dir = _DATA_DIR.value
  hint = train_lib.cpu_allocator_hint(jax.default_backend(), os.environ)
  if hint:
    logging.info(hint)
  try:
    train_lib.train_and_evaluate(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError, train_lib.NonFiniteLossError) as e:
    startup.fail("train", e)


def run():
  """Console-script entry point (`dfe-train`)."""
  startup.run(main, __name__)


if __name__ == "__main__":
  run()
