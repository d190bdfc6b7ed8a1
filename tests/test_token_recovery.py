"""Token recovery: a tokenizer that is the ground truth scores 1, k-means sits in between,
labels follow the dominant display of each step's frames."""

import numpy as np

from dfe_jax.data import input_pipeline
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import outputs
from dfe_jax.synthetic import token_recovery


def test_step_labels_pick_the_dominant_display_above_threshold():
  display = np.zeros((12, 3))
  display[0:4, 1] = 0.8
  display[4:8, 2] = 0.1
  display[8:12, 0] = 0.5
  display[8:12, 2] = 0.6
  labels = token_recovery.step_labels(display, np.array([0, 4, 8]), np.array([4, 8, 12]), 0.25)
  np.testing.assert_array_equal(labels, [1, 3, 2])  # 3 = none


def test_cluster_scores_perfect_and_random():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, 2000)
  perfect = token_recovery.cluster_scores(labels * 7 + 3, labels, 4)
  assert perfect["nmi"] > 0.999 and perfect["mean_precision"] == 1.0
  noise = token_recovery.cluster_scores(rng.integers(0, 5, 2000), labels, 4)
  assert noise["nmi"] < 0.05


def planted_tokens(manifest, path, threshold):
  """A tokens file whose level-0 code is the true label of each 4-frame step."""
  ids, offsets, codes, valid, starts, ends = [], [0], [], [], [], []
  for row in manifest_format.read(manifest):
    data = outputs.load_npz(row["path"])
    frames = len(data["features"])
    start = np.arange(0, frames, 4, dtype=np.int32)
    end = np.minimum(start + 4, frames).astype(np.int32)
    label = token_recovery.step_labels(data["display"], start, end, threshold)
    ids.append(row["video_id"])
    offsets.append(offsets[-1] + len(start))
    codes.append(np.stack([label, np.zeros_like(label)], 1).astype(np.int32))
    valid.append(data["valid"][start])
    starts.append(start)
    ends.append(end)
  outputs.save_npz(path, video_id=np.array(ids), offset=np.array(offsets, np.int64),
                   codes=np.concatenate(codes), valid=np.concatenate(valid),
                   frame_start=np.concatenate(starts), frame_end=np.concatenate(ends),
                   codebook_size=np.int32(32), num_levels=np.int32(2),
                   shared_codebook=np.bool_(True))


def test_planted_tokens_recover_displays_and_beat_kmeans(small_corpus, small_shards, tmp_path):
  info = input_pipeline.load_info(small_shards)
  path = str(tmp_path / "tokens.npz")
  planted_tokens(small_corpus, path, 0.25)
  report = token_recovery.token_recovery_report(path, small_corpus, info, threshold=0.25)
  assert report["tokens"]["nmi"] > 0.999 and report["tokens"]["mean_precision"] == 1.0
  assert 0.0 < report["kmeans"]["nmi"] < report["tokens"]["nmi"]
  assert report["codebook_size"] == 32 and 0.2 < report["active_fraction"] < 1.0
  table = token_recovery.format_report(report)
  assert "k-means" in table and "DFE tokens" in table
