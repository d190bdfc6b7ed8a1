#!/usr/bin/env bash
# Runs one training job as N local processes joined by jax.distributed over 127.0.0.1
# (CPU collectives through gloo): the multi-host code path, on one machine.
#
#   launch/multiprocess_local.sh 2 --config=configs/rvq.py:smoke --workdir=/tmp/mp --data_dir=DATA
#
# Each process reads its own shard files; ingest with --num_shards >= N.
set -euo pipefail
num_processes=${1:?usage: $0 NUM_PROCESSES TRAIN_FLAGS...}
shift
port=${PORT:-$((20000 + RANDOM % 20000))}
# glibc maps XLA's per-step CPU workspace afresh every step; 2 MiB pages make that far cheaper
# (README, "Page faults"). A GLIBC_TUNABLES of your own is kept.
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}
pids=()
for ((i = 0; i < num_processes; i++)); do
  JAX_COORDINATOR_ADDRESS=127.0.0.1:${port} JAX_NUM_PROCESSES=${num_processes} \
  JAX_PROCESS_ID=${i} python -m dfe_jax.train --distributed "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "${pid}" || status=$?
done
exit ${status}
