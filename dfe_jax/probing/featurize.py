"""Per-video representations for the probes: DFE bag-of-words and the baselines it is compared with.

Every representation maps the probe's videos (a fixed list, index `i`) to a matrix `X` [V, F].
Those that learn something from data without labels (k-means codes, IDF weights) are fitted
inside each training fold by the caller, never on test videos.
"""

import csv
import dataclasses

import numpy as np
from sklearn import cluster
from sklearn.feature_extraction import text as sklearn_text
from sklearn import preprocessing

from dfe_jax.formats import openface
from dfe_jax.formats import tokens as tokens_format

WEIGHTINGS = ("tfidf", "tf", "binary", "log")
_PERCENTILES = (10, 50, 90)


class ProbeInputError(ValueError):
  """A probe input is missing, malformed or inconsistent; the message names the file or column."""


@dataclasses.dataclass
class Tokens:
  """The Tokenize output (DESIGN.md, "Tokens"), all shards merged in file order."""
  video_ids: np.ndarray  # str [V]
  offset: np.ndarray  # int64 [V+1]; rows of video v are offset[v]:offset[v+1]
  codes: np.ndarray  # int32 [N, L]; -1 = level skipped
  valid: np.ndarray  # bool [N]
  codebook_size: int
  num_levels: int
  shared_codebook: bool
  latents: np.ndarray | None  # float32 [N, code_dim]
  files: list

  def rows(self, video_index):
    return slice(int(self.offset[video_index]), int(self.offset[video_index + 1]))


def load_tokens(path, need_latents=False):
  """Reads tokens (one file or all shards) as `Tokens`; refuses an empty set."""
  try:
    data = tokens_format.read(path, need_latents)
  except tokens_format.TokensError as e:
    raise ProbeInputError(str(e)) from None
  files = data["files"]
  if len(data["video_id"]) == 0 or len(data["codes"]) == 0:
    raise ProbeInputError(f"{files[0]}: the tokens file is empty (no videos or no latent steps)")
  return Tokens(
      video_ids=data["video_id"], offset=data["offset"], codes=data["codes"],
      valid=data["valid"], codebook_size=int(data["codebook_size"]),
      num_levels=int(data["num_levels"]), shared_codebook=bool(data["shared_codebook"]),
      latents=data["latents"].astype(np.float32) if need_latents else None, files=files)


def bag_of_words(tokens, token_rows, vocabulary, ngram_max, min_video_count):
  """Token (and n-gram) rates per valid latent step [V, F], with one descriptor dict per column.

  `vocabulary='shared'` counts a code id the same at every level (the paper's bag over the
  shared codebook); `'per_level'` counts (level, id) pairs. N-grams join codes of one level on
  consecutive valid steps. Columns seen in fewer than `min_video_count` videos are dropped:
  they cannot generalise across videos, and the filter uses no labels.
  """
  k, num_levels = tokens.codebook_size, tokens.num_levels
  per_level = vocabulary == "per_level"
  video_words, video_steps = [], []
  for rows in token_rows:
    codes, valid = tokens.codes[rows], tokens.valid[rows]
    video_steps.append(max(int(valid.sum()), 1))
    words = []
    for order in range(1, ngram_max + 1):
      size = k ** order
      base = sum((num_levels if per_level else 1) * k ** o for o in range(1, order))
      if len(codes) < order:
        continue
      span = len(codes) - order + 1
      word = np.zeros((span, num_levels), np.int64)
      ok = np.ones((span, num_levels), bool)
      for j in range(order):
        step = codes[j:j + span]
        word = word * k + np.maximum(step, 0)
        ok &= (step >= 0) & valid[j:j + span, None]
      if per_level:
        word = word + np.arange(num_levels) * size
      words.append(base + word[ok])
    video_words.append(np.concatenate(words) if words else np.zeros(0, np.int64))
  all_ids, video_of = (np.concatenate(video_words),
                       np.repeat(np.arange(len(video_words)), [len(w) for w in video_words]))
  vocab, column = np.unique(all_ids, return_inverse=True)
  counts = np.zeros((len(video_words), len(vocab)), np.float64)
  np.add.at(counts, (video_of, column), 1.0)
  keep = (counts > 0).sum(0) >= min_video_count
  rates = counts[:, keep] / np.asarray(video_steps, np.float64)[:, None]
  return rates, [_describe_word(w, k, num_levels, per_level) for w in vocab[keep]]


def _describe_word(word, k, num_levels, per_level):
  """Turns a column's integer word id back into {name, tokens, level}."""
  order, base = 1, 0
  while True:
    size = (num_levels if per_level else 1) * k ** order
    if word < base + size:
      break
    base, order = base + size, order + 1
  local = int(word - base)
  level, local = (local // k ** order, local % k ** order) if per_level else (None, local)
  ids = [(local // k ** (order - 1 - j)) % k for j in range(order)]
  name = ">".join(f"T{i}" for i in ids)  # The report's names: T17, and L2:T17 for level 2.
  return {"name": f"L{level + 1}:{name}" if per_level else name, "tokens": ids, "level": level}


def level_histogram(tokens, token_rows):
  """Uses of each code id at each level [K, L] over valid steps, to place shared tokens."""
  hist = np.zeros((tokens.codebook_size, tokens.num_levels), np.int64)
  for rows in token_rows:
    codes = tokens.codes[rows][tokens.valid[rows]]
    for level in range(tokens.num_levels):
      ids = codes[:, level]
      hist[:, level] += np.bincount(ids[ids >= 0], minlength=tokens.codebook_size)
  return hist


def weighting_steps(weighting):
  """Pipeline steps (fitted inside training folds) that turn rates into the chosen weighting.

  `tfidf` is scikit-learn's TF-IDF over the rates (IDF from the training fold, rows L2
  normalised); `binary` marks presence; `log` is log(1 + occurrences per 100 valid steps),
  damping frequent tokens; `tf` leaves rates as they are.
  """
  if weighting == "tfidf":
    return [("tfidf", sklearn_text.TfidfTransformer()),
            ("dense", preprocessing.FunctionTransformer(_dense))]
  if weighting == "binary":
    return [("binary", preprocessing.FunctionTransformer(_presence))]
  if weighting == "log":
    return [("log", preprocessing.FunctionTransformer(_log_rate))]
  if weighting == "tf":
    return []
  raise ProbeInputError(f"config.dfe.weighting: '{weighting}' is not one of {WEIGHTINGS}")


def _dense(x):
  return x.toarray() if hasattr(x, "toarray") else x


def _presence(x):
  return (x > 0).astype(np.float64)


def _log_rate(x):
  return np.log1p(100.0 * x)


def functionals(frames_TD, valid_T, fps, names, with_velocity=True):
  """Mean, std, percentiles and velocity statistics over one video's valid frames [F], with names.

  Velocity (per second) is taken only between consecutive valid frames, so a face-lost gap
  never shows up as a jump.
  """
  kept = frames_TD[valid_T] if len(frames_TD) else frames_TD
  if len(kept) == 0:
    kept = np.zeros((1, len(names)), np.float64)
  parts = [kept.mean(0), kept.std(0)] + list(np.percentile(kept, _PERCENTILES, axis=0))
  out_names = [f"{s}/{n}" for s in ["mean", "std"] + [f"p{p}" for p in _PERCENTILES] for n in names]
  if with_velocity:
    pairs = valid_T[1:] & valid_T[:-1] if len(frames_TD) > 1 else np.zeros(0, bool)
    velocity = (np.diff(frames_TD, axis=0)[pairs] * fps if pairs.any()
                else np.zeros((1, len(names))))
    parts += [np.abs(velocity).mean(0), velocity.std(0)]
    out_names += [f"{s}/{n}" for s in ("speed_mean", "velocity_std") for n in names]
  return np.concatenate(parts).astype(np.float64), out_names


def frame_functionals(videos, names):
  """Functionals of raw expression vectors for every video [V, F] (`video_files.Video`s)."""
  rows = [functionals(v.features, v.valid, v.fps, names) for v in videos]
  return np.stack([r[0] for r in rows]), rows[0][1]


def au_features(intensity_TA, intensity_names, occurrence_TA, occurrence_names, valid_T, fps):
  """The FACS pipeline for one video: AU intensity functionals plus occurrence rates [F]."""
  values, names = functionals(intensity_TA, valid_T, fps, list(intensity_names))
  names = [f"au/{n}" for n in names]
  if occurrence_TA.shape[1]:
    occurring = occurrence_TA[valid_T]
    values = np.concatenate([values, occurring.mean(0) if len(occurring) else
                             np.zeros(occurrence_TA.shape[1])])
    names += [f"au/occurrence/{n}" for n in occurrence_names]
  return values, names


def au_from_openface(path, fps):
  """AU features [F] from one OpenFace 2.x CSV, valid (`success`) frames only."""
  table = openface.read_openface_csv(path)
  return au_features(table["intensity"], table["intensity_names"], table["occurrence"],
                     table["occurrence_names"], table["valid"], fps)


def pooled_latents(tokens, token_rows):
  """Continuous latents pooled over valid steps: mean and std per dimension [V, 2 * code_dim]."""
  rows = []
  for rows_v in token_rows:
    latents = tokens.latents[rows_v][tokens.valid[rows_v]]
    if len(latents) == 0:
      latents = np.zeros((1, tokens.latents.shape[1]), np.float32)
    rows.append(np.concatenate([latents.mean(0), latents.std(0)]))
  dim = tokens.latents.shape[1]
  return np.stack(rows).astype(np.float64), ([f"mean/z{i}" for i in range(dim)] +
                                              [f"std/z{i}" for i in range(dim)])


def read_feature_table(path, video_ids):
  """A user's feature table keyed by `video_id` [V, F]: a row per video, or per frame, pooled."""
  try:
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      columns = [c for c in (reader.fieldnames or [])
                 if c not in ("video_id", "subject_id", "frame")]
      rows = list(reader)
  except OSError as e:
    raise ProbeInputError(f"{path}: cannot read feature table ({e.strerror})") from e
  if "video_id" not in (reader.fieldnames or []):
    raise ProbeInputError(f"{path}: feature table has no 'video_id' column")
  by_video = {}
  for line, row in enumerate(rows, start=2):
    try:
      values = [float(row[c]) for c in columns]
    except (TypeError, ValueError) as e:
      raise ProbeInputError(f"{path}:{line}: non-numeric or empty value ({e})") from e
    by_video.setdefault(row["video_id"], []).append(values)
  missing = [v for v in video_ids if v not in by_video]
  if missing:
    raise ProbeInputError(f"{path}: no rows for {len(missing)} probed videos, e.g. '{missing[0]}'")
  per_frame = any(len(r) > 1 for r in by_video.values())
  if not per_frame:
    return np.array([by_video[v][0] for v in video_ids], np.float64), columns
  rows = []
  for v in video_ids:
    frames = np.array(by_video[v], np.float64)
    rows.append(functionals(frames, np.ones(len(frames), bool), 1.0, columns, with_velocity=False))
  return np.stack([r[0] for r in rows]), rows[0][1]


class KMeansBagOfWords:
  """Single-codebook k-means tokens as bag-of-words rates.

  Two protocols. Per fold (`fit_once_on` None): frames are z-scored with the training fold's
  statistics and the centroids fitted on its frames. Like the tokenizer (`fit_once_on` = the
  videos of the tokenizer's training split, whose frames arrive normalised as it saw them): one
  fit, no labels, used in every fold, as the tokenizer is. Either way at most `max_fit_frames`
  frames are sampled (seeded) for a fit.
  """

  def __init__(self, videos, num_codes, max_fit_frames, seed, fit_once_on=None):
    self.frames_by_video = [v.features[v.valid].astype(np.float32) for v in videos]
    self.num_codes = num_codes
    self.max_fit_frames = max_fit_frames
    self.seed = seed
    self.fit_once_on = None if fit_once_on is None else tuple(int(i) for i in fit_once_on)
    self._cache = {}

  def fit_frames(self, train_videos):
    """The frames a fit sees [N, D] (before sampling), and the (mean, std) that scaled them."""
    key = self.fit_once_on if self.fit_once_on is not None else tuple(int(i) for i in train_videos)
    frames = np.concatenate([self.frames_by_video[i] for i in key])
    if self.fit_once_on is None:
      mean, std = frames.mean(0), frames.std(0) + 1e-6
    else:  # Already normalised as the tokenizer saw them.
      mean, std = np.zeros(frames.shape[1], np.float32), np.ones(frames.shape[1], np.float32)
    return ((frames - mean) / std).astype(np.float32), mean, std

  def rates(self, train_videos, videos):
    """Rates [len(videos), num_codes] with centroids fitted on `train_videos` only (or once on
    `fit_once_on`)."""
    key = self.fit_once_on if self.fit_once_on is not None else tuple(int(i) for i in train_videos)
    if key not in self._cache:
      train_frames, mean, std = self.fit_frames(train_videos)
      rng = np.random.default_rng(self.seed)
      if len(train_frames) > self.max_fit_frames:
        sample = rng.choice(len(train_frames), self.max_fit_frames, replace=False)
        train_frames = train_frames[sample]
      # One k-means++ start on a small init sample: the probe fits this per outer fold.
      kmeans = cluster.MiniBatchKMeans(
          n_clusters=min(self.num_codes, len(train_frames)), batch_size=1024, n_init=1,
          random_state=self.seed).fit(train_frames)
      self._cache = {key: (kmeans, mean, std)}  # Folds are visited in order; keep one.
    kmeans, mean, std = self._cache[key]
    frames = [self.frames_by_video[i] for i in videos]
    out = np.zeros((len(videos), self.num_codes))
    if sum(len(f) for f in frames):
      codes = kmeans.predict(((np.concatenate(frames) - mean) / std).astype(np.float32))
      ends = np.cumsum([len(f) for f in frames])
      for row, (end, f) in enumerate(zip(ends, frames)):
        if len(f):
          out[row] = np.bincount(codes[end - len(f):end], minlength=self.num_codes) / len(f)
    return out
