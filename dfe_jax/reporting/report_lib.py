"""The report: one HTML page showing what every token does, when it fires and how well it
reconstructs, from a training workdir (+ tokens and manifest when given).

`write_report` gathers the data (`ReportData`: model, tokens, per-video features and AUs) and
then writes each section; `token_sections.py` draws them. Tokens come from `--tokens` (the
tokenize output); without them the report encodes up to `max_videos` manifest videos itself.
"""

import dataclasses
import os
import time

from absl import logging
import numpy as np

from dfe_jax.data import ingest_lib
from dfe_jax.formats import dataset_info
from dfe_jax.formats import filesystem
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import metrics_log
from dfe_jax.formats import normalization
from dfe_jax.formats import outputs
from dfe_jax.formats import probe_results
from dfe_jax.formats import video_files
from dfe_jax.reporting import behaviour_sections
from dfe_jax.reporting import findings_sections
from dfe_jax.reporting import html_page
from dfe_jax.reporting import token_sections
from dfe_jax.reporting import token_stats
from dfe_jax.synthetic import display_discovery
from dfe_jax.tokenizer import chunked_encoder
from dfe_jax.tokenizer import trained_model
from dfe_jax.video import action_units
from dfe_jax.video import jitter

SECTIONS = (token_sections.overview, findings_sections.discovery, findings_sections.probes,
            token_sections.training, token_sections.usage,
            token_sections.dictionary, token_sections.composition, behaviour_sections.facs,
            behaviour_sections.timing, behaviour_sections.exemplars, behaviour_sections.reconstruction)


@dataclasses.dataclass
class ReportOptions:
  """What to draw and how much: sizes that keep a 512-code report fast."""
  top_tokens: int = 48       # Tokens drawn as faces and profiles; the rest are listed.
  max_videos: int = 200      # Videos read from the manifest (AUs, self-encoding).
  heldout_videos: int = 3    # Held-out videos plotted against their reconstruction.
  composition_frames: int = 3
  step: int | None = None    # Checkpoint step (default latest).
  best: bool = False         # Use the best checkpoint instead.
  overwrite: bool = False


@dataclasses.dataclass
class Video:
  """One manifest video as the model sees it: normalised frames at the dataset's rate."""
  video_id: str
  subject_id: str
  split: str
  x_raw: np.ndarray          # [T, D] input units, resampled
  x: np.ndarray              # [T, D] normalised, zero where invalid
  valid: np.ndarray          # [T]
  au: np.ndarray | None      # [T, A] resampled, or None
  au_names: tuple | None
  video_path: str | None
  au_derived: bool = False   # AUs estimated here from blendshapes, not given by the file.
  jitter: float = float("nan")  # video.jitter.blendshape_jitter at the source rate (as extract).


@dataclasses.dataclass
class ReportData:
  """Everything the sections draw from."""
  trained: trained_model.TrainedModel
  workdir: str
  output_dir: str
  feature_names: list
  fps: float
  tokens: dict | None
  tokens_source: str
  videos: dict               # video_id -> Video (those read from the manifest)
  split_source: str
  metrics: list
  options: ReportOptions
  flame_model: str | None
  manifest: str | None = None
  discovery: dict | None = None  # discovery.json of dfe-discover
  probe: dict | None = None      # results.json of dfe-probe
  notes: list = dataclasses.field(default_factory=list)
  cache: dict = dataclasses.field(default_factory=dict)  # Results shared between sections.


def _read_splits(rows, data_dir):
  """{video_id: split} from the manifest's split column, else the ingest's videos.csv."""
  if rows and all((r.get("split") or "").strip() for r in rows):
    return {r["video_id"]: r["split"] for r in rows}, "the manifest's split column"
  path = os.path.join(data_dir, dataset_info.VIDEOS_CSV) if data_dir else ""
  if path and filesystem.exists(path):
    return dataset_info.read_video_splits(data_dir), path
  return {}, "unknown (no split column and no videos.csv); held-out plots use the last videos"


def _load_video(row, split, info, feature_names):
  """Reads and resamples one manifest video to the dataset's frame rate and normalises it."""
  video = video_files.read_video(row["path"])
  if tuple(video.feature_names) != tuple(feature_names):
    raise ValueError(f"{row['path']}: features differ from the model's "
                     f"({len(video.feature_names)} vs {len(feature_names)} names)")
  fps = float(info["fps"])
  src = video_files.frame_rate(row["path"], video.fps, row.get("fps"))
  finite = np.isfinite(video.features).all(1)
  x = np.where(finite[:, None], video.features, 0.0).astype(np.float32)
  x_raw, valid = ingest_lib.resample(x, video.valid & finite, src, fps)
  au = None
  if video.au is not None:
    au, _ = ingest_lib.resample(np.nan_to_num(video.au).astype(np.float32),
                                np.ones(len(video.au), bool), src, fps)
  x = np.where(valid[:, None], normalization.normalize(info["normalization"], x_raw, row["subject_id"]), 0)
  return Video(row["video_id"], row["subject_id"], split, x_raw, x.astype(np.float32), valid,
               au, video.au_names, (row.get("video_path") or "").strip() or None,
               jitter=jitter.blendshape_jitter(video.features, video.valid, feature_names))


def encode_videos(trained, videos):
  """Tokens (DESIGN format) for `videos`, encoded as `tokenize` does (chunked, bucketed)."""
  encoder = chunked_encoder.ChunkedEncoder(trained)
  encoded = encoder.encode([(v.x, v.valid) for v in videos])
  counts = [len(valid) for _, _, valid in encoded]
  spans = [chunked_encoder.step_frames(n, encoder.factor, len(v.x))
           for n, v in zip(counts, videos)]
  q = trained.config.model.quantizer
  return {"video_id": np.array([v.video_id for v in videos]),
          "offset": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
          "codes": np.concatenate([codes for codes, _, _ in encoded]).astype(np.int32),
          "valid": np.concatenate([valid for _, _, valid in encoded]).astype(bool),
          "frame_start": np.concatenate([start for start, _ in spans]),
          "frame_end": np.concatenate([end for _, end in spans]),
          "codebook_size": q.codebook_size, "num_levels": q.num_levels,
          "shared_codebook": q.shared_codebook}


def _pick_videos(rows, split_of, tokens, max_videos, heldout_videos):
  """Manifest rows to read: held-out ones first, then the tokenized ones, up to `max_videos`."""
  held = [r for r in rows if split_of.get(r["video_id"]) in token_sections.HELD_OUT_SPLITS]
  if not split_of:
    held = rows[-heldout_videos:]
  tokenized = set(map(str, tokens["video_id"])) if tokens is not None else None
  rest = [r for r in rows if r not in held and (tokenized is None or r["video_id"] in tokenized)]
  return (held + rest)[:max(max_videos, heldout_videos)]


def gather(workdir, output_dir, *, tokens=None, manifest=None, flame_model=None, data_dir=None,
           discovery_dir=None, probe_dir=None, options=None):
  """Loads the model, tokens, manifest videos and metrics for the report."""
  options = options or ReportOptions()
  trained = trained_model.load(workdir, step=options.step, best=options.best)
  info = trained.info
  feature_names = [str(n) for n in info["feature_names"]]
  notes = []
  token_data, tokens_source = None, ""
  if tokens:
    token_data = token_stats.load_tokens(tokens)
    tokens_source = tokens
  manifest = manifest or (info.get("manifest") or {}).get("path")
  rows, videos, split_of, split_source = [], {}, {}, "no manifest"
  if manifest and filesystem.exists(manifest):
    rows = manifest_format.read(manifest)
    split_of, split_source = _read_splits(rows, data_dir or trained.config.get("data_dir", ""))
    for row in _pick_videos(rows, split_of, token_data, options.max_videos,
                            options.heldout_videos):
      videos[row["video_id"]] = _load_video(row, split_of.get(row["video_id"], "?"), info,
                                            feature_names)
    if len(rows) > len(videos):
      notes.append(f"Read {len(videos)} of the manifest's {len(rows)} videos "
                   f"(--max_videos={options.max_videos}).")
  elif manifest:
    notes.append(f"Manifest {manifest} not found: no per-video plots, AUs or self-encoding.")
  is_rvq = trained.config.model.quantizer.kind == "rvq"
  if token_data is None and videos and is_rvq:
    token_data = encode_videos(trained, list(videos.values()))
    tokens_source = (f"encoded here from {len(videos)} manifest videos (pass --tokens for the "
                     "tokenize output over the whole corpus)")
  if not is_rvq:
    notes.append("The model is continuous (quantizer.kind='none'): it has no tokens, so only "
                 "reconstructions and training curves are shown.")
  for v in videos.values():
    if v.au is None and set(action_units.MAPPING[0][3]) <= set(feature_names):
      try:
        v.au, v.au_names = action_units.from_blendshapes(v.x_raw, feature_names)
        v.au_derived = True
      except ValueError:
        pass
  return ReportData(trained, workdir, output_dir, feature_names, float(info["fps"]), token_data,
                    tokens_source, videos, split_source, metrics_log.read(workdir), options,
                    flame_model, manifest,
                    display_discovery.read(discovery_dir) if discovery_dir else None,
                    probe_results.read(probe_dir) if probe_dir else None, notes)


def write_report(workdir, output_dir, *, tokens=None, manifest=None, flame_model=None,
                 data_dir=None, discovery_dir=None, probe_dir=None, options=None,
                 **option_overrides):
  """Writes `report.html` and its PNGs into `output_dir`; returns the report's path."""
  options = dataclasses.replace(options or ReportOptions(), **option_overrides)
  outputs.check_writable_dir(output_dir, options.overwrite)
  start = time.time()
  data = gather(workdir, output_dir, tokens=tokens, manifest=manifest, flame_model=flame_model,
                data_dir=data_dir, discovery_dir=discovery_dir, probe_dir=probe_dir,
                options=options)
  logging.info("report: data gathered in %.1f s", time.time() - start)
  page = html_page.Page(f"DFE report: {os.path.basename(os.path.normpath(workdir))}")
  for section in SECTIONS:
    t = time.time()
    section(page, data)
    logging.info("report: %s in %.1f s", section.__name__, time.time() - t)
  path = os.path.join(output_dir, "report.html")
  with outputs.atomic_open(path) as f:
    f.write(page.render())
  logging.info("report: wrote %s in %.1f s", path, time.time() - start)
  return path
