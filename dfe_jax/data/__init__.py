"""Ingest (per-video files -> TFRecord shards + dataset.json) and the tf.data pipeline."""
