"""When and how often tokens fire: usage, perplexity, runs, co-occurrence, exemplars, AUs.

Everything here is NumPy over the tokens format of DESIGN.md ("Tokens"): `video_id` [V],
`offset` [V+1], `codes` [N, L] (-1 = skipped), `valid` [N], `frame_start`/`frame_end` [N].
"""

import numpy as np

from dfe_jax.formats import tokens as tokens_format

_RUN_DTYPE = [("level", "i4"), ("code", "i4"), ("video", "i4"), ("row", "i8"), ("length", "i8")]
def load_tokens(path):
  """Reads a tokens set (`tokens.npz`, its folder, or numbered shards) as one dict."""
  data = tokens_format.read(path)
  missing = [k for k in tokens_format.ROW_ARRAYS if k not in data]
  if missing:
    raise tokens_format.TokensError(f"{data['files'][0]}: not a tokens file of dfe-tokenize, "
                                    f"lacks {', '.join(missing)}")
  return data


def video_of_row(tokens):
  """The video index [N] of every row."""
  return np.repeat(np.arange(len(tokens["video_id"])), np.diff(tokens["offset"]))


def usage_counts(tokens, codebook_size):
  """Counts [L, K] of each code at each level over valid rows."""
  codes = tokens["codes"][tokens["valid"].astype(bool)]
  counts = np.zeros((codes.shape[1], codebook_size), np.int64)
  for level in range(codes.shape[1]):
    c = codes[:, level]
    counts[level] = np.bincount(c[c >= 0], minlength=codebook_size)[:codebook_size]
  return counts


def perplexity(counts_K):
  """exp(entropy) of a count histogram: the effective number of codes in use."""
  total = counts_K.sum()
  if total == 0:
    return 0.0
  p = counts_K[counts_K > 0] / total
  return float(np.exp(-(p * np.log(p)).sum()))


def runs(tokens):
  """Runs of one code held over consecutive valid rows of a video, per level.

  Returns a structured array: level, code, video, start row, length (rows).
  """
  codes, valid = tokens["codes"], tokens["valid"].astype(bool)
  video = video_of_row(tokens)
  n = len(codes)
  parts = []
  for level in range(codes.shape[1]):
    c = np.where(valid, codes[:, level], -1)
    change = np.r_[True, (c[1:] != c[:-1]) | (video[1:] != video[:-1])] if n else np.zeros(0, bool)
    starts = np.nonzero(change)[0]
    lengths = np.diff(np.r_[starts, n])
    keep = c[starts] >= 0
    part = np.zeros(int(keep.sum()), dtype=_RUN_DTYPE)
    part["level"], part["code"], part["video"] = level, c[starts[keep]], video[starts[keep]]
    part["row"], part["length"] = starts[keep], lengths[keep]
    parts.append(part)
  return np.concatenate(parts) if parts else np.zeros(0, _RUN_DTYPE)


def longest_runs(run_table, top=3):
  """{code: its `top` longest runs (any level)}, one sort for all codes."""
  order = np.lexsort((-run_table["length"], run_table["code"]))
  table = run_table[order]
  first = np.r_[0, np.nonzero(np.diff(table["code"]))[0] + 1]
  bounds = np.r_[first, len(table)]
  return {int(table["code"][a]): table[a:min(b, a + top)] for a, b in zip(bounds[:-1], bounds[1:])}


def mean_run(run_table, codebook_size):
  """Mean run length (rows) of each code [K] (any level), NaN where a code never fires."""
  out = np.full(codebook_size, np.nan)
  order = np.argsort(run_table["code"], kind="stable")
  table = run_table[order]
  first = np.r_[0, np.nonzero(np.diff(table["code"]))[0] + 1]
  for a, b in zip(first, np.r_[first[1:], len(table)]):
    if b > a:
      out[table["code"][a]] = np.mean(table["length"][a:b])
  return out


def cooccurrence(tokens, codes_C):
  """P(token b in a step | token a in the step) [C, C] over valid rows, any levels."""
  rows = tokens["codes"][tokens["valid"].astype(bool)]
  present_NC = np.stack([(rows == c).any(axis=1) for c in codes_C], axis=1).astype(np.float64)
  joint = present_NC.T @ present_NC
  return joint / np.maximum(np.diag(joint)[:, None], 1.0)


def describe_runs(runs_R, tokens, fps):
  """[(video_id, start s, duration s)] of some rows of a run table."""
  out = []
  for r in runs_R:
    row, last = int(r["row"]), int(r["row"] + r["length"] - 1)
    out.append((str(tokens["video_id"][r["video"]]), float(tokens["frame_start"][row]) / fps,
                float(tokens["frame_end"][last] - tokens["frame_start"][row]) / fps))
  return out


def row_means(values_TA, tokens, v):
  """Per-row means [n, A] of per-frame values over the frames each row of video `v` covers."""
  lo, hi = int(tokens["offset"][v]), int(tokens["offset"][v + 1])
  starts = np.clip(tokens["frame_start"][lo:hi], 0, len(values_TA) - 1)
  ends = np.clip(tokens["frame_end"][lo:hi], starts + 1, len(values_TA))
  cumsum = np.concatenate([np.zeros((1, values_TA.shape[1])), np.cumsum(values_TA, axis=0)])
  return (cumsum[ends] - cumsum[starts]) / (ends - starts)[:, None]


def au_rise(tokens, au_rows_NA, have_N, codes_C):
  """Mean AU while each token is active (any level) minus the mean over all rows [C, A].

  `au_rows_NA` holds each row's AU means; `have_N` marks rows that have AU data.
  """
  keep = have_N & tokens["valid"].astype(bool)
  rows, au = tokens["codes"][keep], au_rows_NA[keep]
  overall = au.mean(axis=0)
  rise = np.full((len(codes_C), au.shape[1]), np.nan)
  count = np.zeros(len(codes_C), np.int64)
  for i, c in enumerate(codes_C):
    active = (rows == c).any(axis=1)
    count[i] = active.sum()
    if count[i]:
      rise[i] = au[active].mean(axis=0) - overall
  return rise, count
