"""A synthetic facial-display corpus with a known answer, standing in for EMOCA output.

The generative model, per corpus (all randomness from `seed`):

1. **Display dictionary.** `G` displays, each a loading vector `W_g` over the `D` features.
   Features are grouped into *units*: mirror pairs (`...Left`/`...Right` for `arkit51`;
   `(exp_2i, exp_2i+1)` for `flame53`, a stand-in since FLAME's basis has no sides) and single
   features. Display `g` picks 1-3 units; for a pair it loads both sides (symmetric, even `g`)
   or one side (one-sided, odd `g`). Loadings are `U(0.6, 1.4)` with a random sign (`flame53`)
   or `U(0.3, 0.9)` (`arkit51`, non-negative). A third of the `flame53` displays also open
   the jaw (`jaw_0 += U(0.1, 0.3)`). Any feature still unused joins a random display (a
   pair side joins a symmetric display with its mirror; jaw `U(0.2, 0.5)`), so every feature
   moves with some display. Displays `2k+1` for `k < G/4` are *partners* of `2k`:
   when `2k` fires, `2k+1` fires too with probability 0.6, 0-0.5 s later.
2. **Traits and labels.** Each subject has latent traits `z_s = (stress, depression,
   extraversion) ~ N(0, I)`; each video has a stress state `z_v = 0.7 z_s,stress + 0.7 N(0,1)`.
   Labels: `stress = [z_v > 0]` (per video), `depression = [z_s,dep > 0.43]` (per subject,
   about a third positive), `extraversion = clip(3 + 0.8 z_s,extra, 1, 5)` (per subject).
3. **Display rates.** Event rate per minute `r_g = b_g exp(sum_k B_gk z_k)`, with base rates
   `b_g ~ U(4, 16)` and a sparse trait matrix `B` (each trait moves three displays by +-0.7).
4. **Events.** Per display a Poisson process at rate `r_g` (partners added as above). Each
   event has a duration `~ LogUniform(0.2, 3) s`, onset and offset fractions `U(0.15, 0.4)` and
   `U(0.2, 0.45)` with raised-cosine ramps around a flat apex, and an amplitude `U(0.5, 1)`.
   The per-frame activation `A_t,g` sums the events of display `g` (key `display`).
5. **Subject and nuisance.** Per-subject static offset `o_s` (`N(0, 0.25)` per feature for
   `flame53`; `U(0, 0.15)` on a random third of features for `arkit51`) and expressivity
   scale `e_s ~ LogNormal(0, 0.35)`; per-video slow drift along one random direction (sum of
   three sinusoids, periods 20-90 s, amplitude 0.05); sensor noise `N(0, sigma)`, sigma 0.01
   (`flame53`) or 0.005 (`arkit51`). The frame vector is
   `x_t = o_s + e_s A_t W + drift_t + noise_t`, clipped to [0, 1] for `arkit51`.
6. **Face-lost gaps.** `Poisson(seconds / 30)` gaps per video, each `U(0.2, 2) s`, where
   `valid = false` and the features are 0.
7. **Simulated action units.** A stand-in for a FACS detector: `au = clip(A M + N(0, 0.15),
   0, 5)` with `M` mapping each display to one or two of 12 AUs (intensity 1-3), zero where
   the face is lost. It sees the displays only through a noisy, coarse 12-AU view.

Each video's randomness comes from `SeedSequence(seed).spawn`, so the corpus is identical
whatever the number of workers.
"""

import dataclasses
import json
import time

from absl import logging
import numpy as np

from dfe_jax.data import process_pool
from dfe_jax.formats import feature_spaces
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import outputs
from dfe_jax.formats import video_files

TRAITS = ("stress", "depression", "extraversion")
AU_NAMES = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU12", "AU15", "AU17",
            "AU20", "AU26")


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
  """The sizes and options of a synthetic corpus."""
  space: str = "flame53"
  num_subjects: int = 48
  videos_per_subject: int = 3
  video_seconds: float = 60.0
  fps: float = 25.0
  num_displays: int = 16
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class Dictionary:
  """The ground truth shared by all videos of a corpus."""
  feature_names: tuple
  loadings_GD: np.ndarray
  kind: tuple              # "symmetric" | "one-sided" | "single" per display
  partner: np.ndarray      # int [G], -1 when the display has no partner
  base_rate_per_min: np.ndarray
  trait_effects_GK: np.ndarray
  au_map_GA: np.ndarray


def _units(names):
  """Splits feature indices into mirror pairs and singles."""
  index = {n: i for i, n in enumerate(names)}
  pairs, singles, used = [], [], set()
  for i, name in enumerate(names):
    if i in used:
      continue
    if name.endswith("Left") and name[:-4] + "Right" in index:
      j = index[name[:-4] + "Right"]
      pairs.append((i, j))
      used.update((i, j))
    elif name.startswith("exp_") and int(name[4:]) % 2 == 0 and f"exp_{int(name[4:]) + 1:02d}" in index:
      j = index[f"exp_{int(name[4:]) + 1:02d}"]
      pairs.append((i, j))
      used.update((i, j))
    elif not name.startswith("jaw_"):
      singles.append(i)
  return pairs, singles


def make_dictionary(spec):
  """Draws the display dictionary, trait effects and AU map of a corpus."""
  rng = np.random.default_rng([spec.seed, 1])
  names = feature_spaces.SPACES[spec.space]
  d, g_count = len(names), spec.num_displays
  pairs, singles = _units(names)
  loadings = np.zeros((g_count, d), np.float32)
  kinds = []
  # Pairs are dealt out in shuffled rounds, so every pair belongs to some display.
  deck = []
  for g in range(g_count):
    num_units = rng.integers(1, 4)
    symmetric = g % 2 == 0
    chosen_pairs = []
    while len(chosen_pairs) < num_units:
      if not deck:
        deck = list(rng.permutation(len(pairs)))
      if deck[-1] not in chosen_pairs:
        chosen_pairs.append(deck.pop())
      elif len(deck) > 1:
        deck.insert(0, deck.pop())
      else:
        deck.clear()
    for u, p in enumerate(chosen_pairs):
      if u == num_units - 1 and num_units > 1 and singles:
        targets = [singles[rng.integers(len(singles))]]
      elif symmetric:
        targets = list(pairs[p])
      else:
        targets = [pairs[p][rng.integers(2)]]
      for t in targets:
        if spec.space == "arkit51":
          loadings[g, t] = rng.uniform(0.3, 0.9)
        else:
          loadings[g, t] = rng.uniform(0.6, 1.4) * rng.choice((-1.0, 1.0))
    if spec.space == "flame53" and g % 3 == 2:
      loadings[g, names.index("jaw_0")] = rng.uniform(0.1, 0.3)
    kinds.append("symmetric" if symmetric else "one-sided")
  # Every feature moves with some display, as every EMOCA coefficient does on real faces.
  # A missing side of a pair joins a symmetric display together with its mirror.
  mirror = {i: j for pair in pairs for i, j in (pair, pair[::-1])}
  for i in np.flatnonzero(~loadings.any(0)):
    if loadings[:, i].any():
      continue
    targets = [i, mirror[i]] if i in mirror else [i]
    g = 2 * rng.integers((g_count + 1) // 2) if i in mirror else rng.integers(g_count)
    for t in targets:
      if loadings[g, t] == 0:
        scale = (0.2, 0.5) if names[t].startswith("jaw_") else (
            (0.3, 0.9) if spec.space == "arkit51" else (0.6, 1.4))
        sign = 1.0 if spec.space == "arkit51" else rng.choice((-1.0, 1.0))
        loadings[g, t] = sign * rng.uniform(*scale)
  partner = np.full(g_count, -1, np.int64)
  for k in range(g_count // 4):
    partner[2 * k] = 2 * k + 1
  base_rate = rng.uniform(4.0, 16.0, g_count)
  effects = np.zeros((g_count, len(TRAITS)), np.float32)
  order = rng.permutation(g_count)
  for k in range(len(TRAITS)):
    for g in order[3 * k:3 * k + 3]:
      effects[g, k] = rng.choice((-0.7, 0.7))
  au_map = np.zeros((g_count, len(AU_NAMES)), np.float32)
  for g in range(g_count):
    for a in rng.choice(len(AU_NAMES), size=rng.integers(1, 3), replace=False):
      au_map[g, a] = rng.uniform(1.0, 3.0)
  return Dictionary(tuple(names), loadings, tuple(kinds), partner, base_rate, effects, au_map)


def draw_subject_traits(spec):
  """Latent traits [S, 3] and per-video stress states [S, V], from the corpus seed."""
  rng = np.random.default_rng([spec.seed, 2])
  z_subject = rng.standard_normal((spec.num_subjects, len(TRAITS)))
  z_stress = 0.7 * z_subject[:, :1] + 0.7 * rng.standard_normal(
      (spec.num_subjects, spec.videos_per_subject))
  return z_subject, z_stress


def labels_of(z_subject, z_stress_video):
  """The observed labels of one video from its latent traits."""
  return {
      "stress": int(z_stress_video > 0),
      "depression": int(z_subject[1] > 0.43),
      "extraversion": round(float(np.clip(3 + 0.8 * z_subject[2], 1, 5)), 4),
  }


def _event_course(fps, rng):
  """One event's onset-apex-offset time course, sampled at `fps`."""
  duration = np.exp(rng.uniform(np.log(0.2), np.log(3.0)))
  n = max(int(round(duration * fps)), 2)
  t = np.arange(n) / (n - 1)
  onset, offset = rng.uniform(0.15, 0.4), rng.uniform(0.2, 0.45)
  course = np.ones(n)
  rise, fall = t < onset, t > 1 - offset
  course[rise] = 0.5 - 0.5 * np.cos(np.pi * t[rise] / onset)
  course[fall] = 0.5 - 0.5 * np.cos(np.pi * (1 - t[fall]) / offset)
  return course


def _add_event(activation_T, start, course):
  """Adds one event's course to a display's activation, cut at the end of the video."""
  end = min(start + len(course), len(activation_T))
  if end > start:
    activation_T[start:end] += course[:end - start]


def make_video(spec, dictionary, subject_offset_D, subject_scale, z_video, seed_seq):
  """Generates one video: features [T, D], valid [T], display [T, G], au [T, A]."""
  rng = np.random.default_rng(seed_seq)
  fps, num_frames = spec.fps, int(round(spec.video_seconds * spec.fps))
  g_count, d = dictionary.loadings_GD.shape
  rates = dictionary.base_rate_per_min * np.exp(dictionary.trait_effects_GK @ z_video)
  display_TG = np.zeros((num_frames, g_count))
  for g in range(g_count):
    num_events = rng.poisson(rates[g] * spec.video_seconds / 60.0)
    for start in rng.integers(0, num_frames, size=num_events):
      amplitude = rng.uniform(0.5, 1.0)
      _add_event(display_TG[:, g], start, amplitude * _event_course(fps, rng))
      partner = dictionary.partner[g]
      if partner >= 0 and rng.uniform() < 0.6:
        lag = int(rng.uniform(0.0, 0.5) * fps)
        _add_event(display_TG[:, partner], start + lag,
                   rng.uniform(0.5, 1.0) * _event_course(fps, rng))
  t_seconds = np.arange(num_frames) / fps
  drift_direction = rng.standard_normal(d)
  drift_direction /= np.linalg.norm(drift_direction)
  drift = sum(np.sin(2 * np.pi * t_seconds / rng.uniform(20, 90) + rng.uniform(0, 2 * np.pi))
              for _ in range(3)) * 0.05 / 3
  noise_sigma = 0.005 if spec.space == "arkit51" else 0.01
  x_TD = (subject_offset_D + subject_scale * display_TG @ dictionary.loadings_GD
          + drift[:, None] * drift_direction + noise_sigma * rng.standard_normal((num_frames, d)))
  if spec.space == "arkit51":
    x_TD = np.clip(x_TD, 0.0, 1.0)
  au_TA = np.clip(display_TG @ dictionary.au_map_GA
                  + 0.15 * rng.standard_normal((num_frames, len(AU_NAMES))), 0.0, 5.0)
  valid_T = np.ones(num_frames, bool)
  for _ in range(rng.poisson(spec.video_seconds / 30.0)):
    start = rng.integers(0, num_frames)
    valid_T[start:start + int(rng.uniform(0.2, 2.0) * fps)] = False
  x_TD[~valid_T] = 0.0
  au_TA[~valid_T] = 0.0
  return {
      "features": x_TD.astype(np.float32),
      "valid": valid_T,
      "fps": np.float32(fps),
      "feature_names": np.array(dictionary.feature_names),
      "display": display_TG.astype(np.float32),
      "au": au_TA.astype(np.float32),
      "au_names": np.array(AU_NAMES),
  }


def draw_subjects(spec):
  """Per-subject static offsets [S, D] and expressivity scales [S]."""
  rng = np.random.default_rng([spec.seed, 3])
  d = len(feature_spaces.SPACES[spec.space])
  if spec.space == "arkit51":
    offsets = rng.uniform(0.0, 0.15, (spec.num_subjects, d)) * (
        rng.uniform(size=(spec.num_subjects, d)) < 1 / 3)
  else:
    offsets = 0.25 * rng.standard_normal((spec.num_subjects, d))
  scales = np.exp(0.35 * rng.standard_normal(spec.num_subjects))
  return offsets, scales


def video_jobs(spec):
  """Yields (video_id, subject_id, subject index, video index, SeedSequence) for every video."""
  seeds = np.random.SeedSequence(spec.seed).spawn(spec.num_subjects * spec.videos_per_subject)
  for s in range(spec.num_subjects):
    for v in range(spec.videos_per_subject):
      yield (f"s{s:05d}_v{v:02d}", f"s{s:05d}", s, v, seeds[s * spec.videos_per_subject + v])


def _write_video(job):
  """Generates and writes one video (runs in a worker process)."""
  spec, dictionary, offset, scale, z_video, seed_seq, path = job
  video = make_video(spec, dictionary, offset, scale, z_video, seed_seq)
  video_files.write_npz(path, **video)
  return len(video["valid"])


def write_corpus(spec, output_dir, overwrite=False, num_workers=1):
  """Generates the corpus described by `spec` into `output_dir`; returns the manifest path."""
  if spec.num_subjects < 1 or spec.videos_per_subject < 1 or spec.video_seconds <= 0:
    raise ValueError("num_subjects, videos_per_subject and video_seconds must be positive")
  outputs.check_writable_dir(output_dir, overwrite)
  outputs.check_writable_dir(outputs.join(output_dir, "videos"), True)
  dictionary = make_dictionary(spec)
  z_subject, z_stress = draw_subject_traits(spec)
  offsets, scales = draw_subjects(spec)
  rows, jobs = [], []
  for video_id, subject_id, s, v, seed_seq in video_jobs(spec):
    z_video = np.array([z_stress[s, v], z_subject[s, 1], z_subject[s, 2]])
    rel_path = f"videos/{video_id}.npz"
    rows.append({"video_id": video_id, "subject_id": subject_id, "path": rel_path,
                 **labels_of(z_subject[s], z_stress[s, v])})
    jobs.append((spec, dictionary, offsets[s], scales[s], z_video, seed_seq,
                 outputs.join(output_dir, rel_path)))
  start, frames = time.time(), 0
  with process_pool.process_pool(num_workers) as pool:
    for i, n in enumerate(pool.map(_write_video, jobs), 1):
      frames += n
      if i % 50 == 0 or i == len(jobs):
        logging.info("synth: %d/%d videos, %d frames, %.0f frames/s", i, len(jobs), frames,
                     frames / max(time.time() - start, 1e-9))
  outputs.save_npz(
      outputs.join(output_dir, "displays.npz"), loadings=dictionary.loadings_GD,
      feature_names=np.array(dictionary.feature_names), kind=np.array(dictionary.kind),
      partner=dictionary.partner, base_rate_per_min=dictionary.base_rate_per_min,
      trait_effects=dictionary.trait_effects_GK, trait_names=np.array(TRAITS),
      au_map=dictionary.au_map_GA, au_names=np.array(AU_NAMES))
  with outputs.atomic_open(outputs.join(output_dir, "corpus.json")) as f:
    json.dump(dataclasses.asdict(spec), f, indent=2)
  manifest = manifest_format.write(outputs.join(output_dir, "manifest.csv"), rows)
  logging.info("synth: wrote %d videos (%d frames) to %s", len(rows), frames, output_dir)
  return manifest
