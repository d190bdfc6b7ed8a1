#!/usr/bin/env bash
# Creates (or reuses) a Cloud TPU VM slice and runs the same training command on every worker,
# with data and workdir on gs:// (the TPU runtime gives jax.distributed.initialize() its
# cluster). Follows the current `gcloud compute tpus tpu-vm` workflow.
#
#   TPU_NAME=dfe ZONE=us-central2-b ACCELERATOR=v4-32 REPO_URL=https://... \
#   launch/tpu_vm.sh --config=configs/rvq.py --workdir=gs://BUCKET/runs/rvq \
#                    --data_dir=gs://BUCKET/data/shards
#
# Ingest with --num_shards >= the number of TPU VM workers (one process per worker).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${ACCELERATOR:=v4-8}"
: "${RUNTIME_VERSION:=tpu-ubuntu2204-base}" "${REPO_URL:?set REPO_URL (this repository)}"
: "${REPO_REF:=main}"

if ! gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" >/dev/null 2>&1; then
  gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
    --accelerator-type="$ACCELERATOR" --version="$RUNTIME_VERSION"
fi

run_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$1"
}

run_all "set -e; if [ ! -d dfe_jax ]; then git clone $REPO_URL dfe_jax; fi; \
  cd dfe_jax && git fetch -q && git checkout -q $REPO_REF && \
  pip install -q -e . 'jax[tpu]>=0.10,<0.11'"
args=$(printf ' %q' "$@")
# bfloat16 compute is the recommended setting on TPUs (parameters and quantizer stay float32).
run_all "cd dfe_jax && DFE_DISTRIBUTED=1 python -m dfe_jax.train --config.model.dtype=bfloat16$args"
