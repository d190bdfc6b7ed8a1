"""Token files (docs/formats.md, "Tokens"): the one writer and the one reader.

A tokens set is `tokens.npz`, or `tokens-00000-of-000NN.npz` ... of the same layout: `video_id`
str [V], `offset` int64 [V+1] (rows of video v are `offset[v]:offset[v+1]`), `codes` int32 [N, L]
(-1 = level skipped), `valid` bool [N], `frame_start`, `frame_end` int32 [N], the model's
`codebook_size`, `num_levels`, `shared_codebook`, optionally `latents` float32 [N, D], and
`format_version`. Files written before versions were recorded have none and read as version 1.
"""

import os
import re

import numpy as np

from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs

FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
ROW_ARRAYS = ("codes", "valid", "frame_start", "frame_end")
MODEL_ARRAYS = ("codebook_size", "num_levels", "shared_codebook")
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.npz$")


class TokensError(ValueError):
  """A tokens file is missing, unreadable, malformed or of an unknown version; names the file."""


def shard_names(count):
  """File names of a set of `count` files: one `tokens.npz`, or numbered shards."""
  return (["tokens.npz"] if count == 1 else
          [f"tokens-{i:05d}-of-{count:05d}.npz" for i in range(count)])


def write(path, video_ids, lengths, rows, model):
  """Writes one tokens file: `rows` holds the ROW_ARRAYS (and optionally `latents`) of the videos
  `video_ids`, `lengths` their row counts; `model` the MODEL_ARRAYS."""
  outputs.save_npz(path, video_id=np.array(video_ids, dtype=str),
                   offset=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                   **rows, **{k: model[k] for k in MODEL_ARRAYS},
                   format_version=np.int32(FORMAT_VERSION))


def files(path):
  """The files of a tokens set: a file, a folder holding `tokens.npz` or shards, or one shard of
  a set (whose siblings must all be there)."""
  if filesystem.isdir(path):
    names = sorted(filesystem.listdir(path))
    if "tokens.npz" in names:
      return [os.path.join(path, "tokens.npz")]
    shards = [n for n in names if _SHARD.match(n) and n.startswith("tokens-")]
    if not shards:
      raise TokensError(f"{path}: no tokens.npz or tokens-NNNNN-of-NNNNN.npz inside")
    path = os.path.join(path, shards[0])
  match = _SHARD.match(os.path.basename(path))
  if match:
    folder, count = os.path.dirname(path), int(match.group("count"))
    paths = [os.path.join(folder, f"{match.group('stem')}-{i:05d}-of-{count:05d}.npz")
             for i in range(count)]
    missing = [p for p in paths if not filesystem.exists(p)]
    if missing:
      raise TokensError(f"{missing[0]}: shard missing ({len(missing)} of {count} absent)")
    return paths
  if not filesystem.exists(path):
    raise TokensError(f"{path}: tokens file not found")
  return [path]


def _read_file(path, need_latents):
  """One file's arrays, checked: version, required arrays, consistent lengths."""
  try:
    arrays = outputs.load_npz(path)
  except (outputs.UnreadableFileError, OSError):
    raise TokensError(f"{path}: not a readable .npz tokens file") from None
  version = int(arrays.get("format_version", 1))
  if version not in READABLE_VERSIONS:
    raise TokensError(f"{path}: tokens format_version {version}; this dfe_jax reads "
                      f"{', '.join(map(str, READABLE_VERSIONS))} (re-tokenize, or update dfe_jax)")
  for key in ("video_id", "offset") + ROW_ARRAYS[:2] + MODEL_ARRAYS + (
      ("latents",) if need_latents else ()):
    if key not in arrays:
      hint = " (write it with tokenize --latents)" if key == "latents" else ""
      raise TokensError(f"{path}: missing array '{key}'{hint}")
  codes = arrays["codes"]
  if codes.ndim != 2 or len(arrays["offset"]) != len(arrays["video_id"]) + 1:
    raise TokensError(f"{path}: 'codes' must be [N, L] and 'offset' [V+1]")
  if arrays["offset"][-1] != len(codes) or len(arrays["valid"]) != len(codes):
    raise TokensError(f"{path}: 'offset' ends at {arrays['offset'][-1]} but 'codes' has "
                      f"{len(codes)} rows and 'valid' {len(arrays['valid'])}")
  return arrays


def read(path, need_latents=False):
  """A whole tokens set as one dict of arrays (shards stitched in order; offsets continued).

  Row arrays a file lacks (`frame_start`, `frame_end` from hand-written files, `latents`) are
  left out; `need_latents` makes `latents` required.
  """
  paths = files(path)
  parts = [_read_file(p, need_latents) for p in paths]
  first = parts[0]
  for p, part in zip(paths[1:], parts[1:]):
    for key in MODEL_ARRAYS:
      if part[key] != first[key]:
        raise TokensError(f"{p}: '{key}' differs from {paths[0]}")
  merged = {"video_id": np.concatenate([p["video_id"].astype(str) for p in parts])}
  unique, counts = np.unique(merged["video_id"], return_counts=True)
  if len(counts) and counts.max() > 1:
    raise TokensError(f"{paths[0]}: video_id '{unique[counts.argmax()]}' appears "
                      f"{counts.max()} times")
  lengths = np.concatenate([np.diff(p["offset"]) for p in parts])
  merged["offset"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  for key in ROW_ARRAYS + ("latents",):
    if all(key in p for p in parts):
      merged[key] = np.concatenate([p[key] for p in parts])
  merged["codes"] = merged["codes"].astype(np.int32)
  merged["valid"] = merged["valid"].astype(bool)
  for key in MODEL_ARRAYS:
    merged[key] = first[key]
  merged["files"] = paths
  return merged
