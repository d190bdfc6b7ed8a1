#!/usr/bin/env bash
# One training process per GPU node of a SLURM allocation; jax.distributed.initialize() reads
# the coordinator, process count and process id from SLURM's environment.
#
#   sbatch --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 launch/slurm.sh \
#       --config=configs/rvq.py --workdir=/shared/runs/rvq --data_dir=/shared/data/shards
#
# Each node sees all its GPUs; the global batch is split over every GPU of every node.
# Ingest with --num_shards >= the number of nodes so every process has files to read.
#SBATCH --job-name=dfe_jax
#SBATCH --ntasks-per-node=1
set -euo pipefail
# CUDA wheels are for this launcher's machines only; the project itself depends on jax (CPU).
if [[ "${DFE_INSTALL:-0}" == 1 ]]; then
  srun --ntasks-per-node=1 pip install -q -e . "jax[cuda12]>=0.10,<0.11"
fi
# bfloat16 compute is the recommended setting on GPUs (parameters and quantizer stay float32);
# a later --config.model.dtype on the command line overrides it.
srun --ntasks-per-node=1 python -m dfe_jax.train --distributed --config.model.dtype=bfloat16 "$@"
