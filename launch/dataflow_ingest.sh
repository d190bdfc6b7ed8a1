#!/usr/bin/env bash
# Runs ingest as a Google Cloud Dataflow job: the same Beam pipeline as on one machine, spread
# over Dataflow's workers, writing the same shards (byte for byte) and dataset.json to gs://.
# Not exercised by the tests (it needs a project); Flink and Spark take their runner's flags in
# --beam_pipeline_options the same way.
#
#   PROJECT=my-project REGION=europe-west4 BUCKET=my-bucket \
#   launch/dataflow_ingest.sh --manifest=gs://my-bucket/corpus/manifest.csv \
#                             --output_dir=gs://my-bucket/shards --normalize=subject
#
# The manifest's paths must be readable by the workers (gs://, or relative to a gs:// manifest).
# Workers install this package from --setup_file; MAX_WORKERS bounds the autoscaling.
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
: "${MAX_WORKERS:=32}" "${JOB_NAME:=dfe-ingest-$(date +%Y%m%d-%H%M%S)}"
cd "$(dirname "$0")/.."
python -m dfe_jax.ingest "$@" --beam_pipeline_options="--runner=DataflowRunner \
  --project=$PROJECT --region=$REGION --job_name=$JOB_NAME \
  --temp_location=gs://$BUCKET/tmp --staging_location=gs://$BUCKET/staging \
  --setup_file=./setup.py --max_num_workers=$MAX_WORKERS"
