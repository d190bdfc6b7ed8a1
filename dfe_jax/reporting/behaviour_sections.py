"""The report's behaviour sections: tokens against FACS AUs, co-occurrence and run durations,
exemplar moments (with thumbnails), and reconstructions of held-out videos."""

import os

import numpy as np

from dfe_jax.reporting import html_page as H
from dfe_jax.reporting import token_sections as S
from dfe_jax.reporting import token_stats

_COOCCUR_TOKENS = 24
_THUMB_HEIGHT = 72
_MIN_AU_STEPS = 10  # Fewer active steps than this give noise, not an AU profile.
# Rises listed in the table: smaller ones are within the step-to-step noise of AU intensities
# (0-5 scale; a detector's intensity noise is a few tenths).
_MIN_AU_RISE = 0.1


def _token_rows(data):
  """Row indices into the token table of the drawn tokens, and their names."""
  d = S.token_table(data)
  return d["top"], [d["names"][i] for i in d["top"]]


def facs(page, data):
  """Which action units rise while each token is active."""
  parts = page.section("facs", "Tokens against FACS action units")
  with_au = {vid: v for vid, v in data.videos.items() if v.au is not None}
  if not S.has_tokens(data) or not with_au:
    parts.append(H.paragraph("No AU data: the per-video files have no `au` array and the "
                             "features are not ARKit blendshapes.", "why"))
    return
  tokens, d = data.tokens, S.token_table(data)
  au_names = next(iter(with_au.values())).au_names
  au_rows = np.zeros((len(tokens["codes"]), len(au_names)))
  have = np.zeros(len(tokens["codes"]), bool)
  for v, vid in enumerate(map(str, tokens["video_id"])):
    video = with_au.get(vid)
    if video is not None and tuple(video.au_names) == tuple(au_names):
      lo, hi = int(tokens["offset"][v]), int(tokens["offset"][v + 1])
      au_rows[lo:hi] = token_stats.row_means(video.au, tokens, v)
      have[lo:hi] = True
  top, names = _token_rows(data)
  codes = [d["entries"][i][1] for i in top]
  rise, count = token_stats.au_rise(tokens, au_rows, have, codes)
  rise[count < _MIN_AU_STEPS] = np.nan
  derived = any(v.au_derived for v in with_au.values())
  parts.append(H.paragraph(
      "Mean AU intensity while the token is active (at any level) minus the mean over all "
      f"steps, over {int(have.sum())} token steps of {len(with_au)} videos; tokens active in "
      f"fewer than {_MIN_AU_STEPS} steps are left blank. " +
      ("AUs are estimated from the blendshapes (dfe_jax.video.action_units), not detected."
       if derived else "AUs from the per-video files' `au` arrays.")))
  pyplot = S.plt()
  vmax = float(np.nanmax(np.abs(rise))) if np.isfinite(rise).any() else 1.0
  fig, ax = pyplot.subplots(figsize=(2 + 0.3 * len(au_names), 1.2 + 0.16 * len(names)))
  im = ax.imshow(rise, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto",
                 interpolation="nearest")
  ax.set_xticks(np.arange(len(au_names)), au_names, rotation=90, fontsize=7)
  ax.set_yticks(np.arange(len(names)), names, fontsize=6)
  fig.colorbar(im, ax=ax, fraction=0.03, label="AU rise while active")
  parts.append(H.image(S.save(fig, data, "token_au.png"), "token vs AU"))
  rows = []
  for n, (name, r, c) in enumerate(zip(names, rise, count)):
    order = [a for a in np.argsort(-np.nan_to_num(r, nan=-np.inf))[:3] if r[a] > _MIN_AU_RISE]
    rows.append((name, int(c), d["labels"][top[n]],
                 ", ".join(f"{au_names[a]} +{r[a]:.2f}" for a in order) or "none"))
  parts.append(H.table(["token", "active steps", "label",
                        f"AUs that rise most (by more than {_MIN_AU_RISE:g})"], rows,
                       scroll=True))


def timing(page, data):
  """Co-occurrence of the most used tokens and how long runs of one token last."""
  parts = page.section("timing", "Co-occurrence and run durations")
  if not S.has_tokens(data):
    parts.append(H.paragraph("No tokens.", "why"))
    return
  d, pyplot = S.token_table(data), S.plt()
  top = d["top"][:_COOCCUR_TOKENS]
  if _shared(data):
    p = token_stats.cooccurrence(data.tokens, [d["entries"][i][1] for i in top])
    fig, ax = pyplot.subplots(figsize=(1.5 + 0.28 * len(top), 1.2 + 0.28 * len(top)))
    im = ax.imshow(p, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    labels = [d["names"][i] for i in top]
    ax.set_xticks(np.arange(len(top)), labels, rotation=90, fontsize=7)
    ax.set_yticks(np.arange(len(top)), labels, fontsize=7)
    ax.set_xlabel("token b")
    ax.set_ylabel("token a")
    fig.colorbar(im, ax=ax, fraction=0.04, label="P(b in step | a in step)")
    parts.append(H.paragraph("How often token b appears (at any level) in a latent step that "
                             "holds token a, for the most used tokens."))
    parts.append(H.image(S.save(fig, data, "cooccurrence.png"), "co-occurrence"))
  runs = d["runs"]
  step_s = 2 ** data.trained.config.model.downsample_log2 / data.fps
  num_levels = data.tokens["codes"].shape[1]
  fig, ax = pyplot.subplots(figsize=(7, 3))
  rows = []
  for l in range(num_levels):
    seconds = runs["length"][runs["level"] == l] * step_s
    if len(seconds):
      ax.hist(seconds, bins=np.arange(0, seconds.max() + 2 * step_s, step_s), histtype="step",
              label=f"level {l + 1}")
      rows.append((l + 1, len(seconds), float(np.median(seconds)), float(seconds.mean()),
                   float(seconds.max())))
  ax.set_yscale("log")
  ax.set_xlabel("run duration (s)")
  ax.legend(fontsize=7)
  parts.append(H.image(S.save(fig, data, "run_durations.png"), "run durations"))
  parts.append(H.table(["level", "runs", "median (s)", "mean (s)", "longest (s)"], rows))


def _shared(data):
  return bool(data.trained.config.model.quantizer.shared_codebook)


def _thumbnail(data, video_path, seconds, name):
  """A frame of the source video at `seconds` as a small PNG, or None."""
  try:
    import cv2  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  capture = cv2.VideoCapture(video_path)
  try:
    capture.set(cv2.CAP_PROP_POS_MSEC, 1000.0 * seconds)
    ok, frame = capture.read()
  finally:
    capture.release()
  if not ok:
    return None
  scale = _THUMB_HEIGHT / frame.shape[0]
  frame = cv2.resize(frame, (max(1, int(frame.shape[1] * scale)), _THUMB_HEIGHT))
  cv2.imwrite(os.path.join(data.output_dir, name), frame)
  return name


def exemplars(page, data):
  """For each drawn token, the videos and times where it holds longest."""
  parts = page.section("exemplars", "Where tokens fire")
  if not S.has_tokens(data):
    parts.append(H.paragraph("No tokens.", "why"))
    return
  d = S.token_table(data)
  longest = token_stats.longest_runs(d["runs"])
  have_video = any(v.video_path for v in data.videos.values())
  rows = []
  for i in d["top"]:
    level, code = d["entries"][i]
    runs = longest.get(code, np.zeros(0, d["runs"].dtype))
    if level is not None:
      runs = runs[runs["level"] == level]
    moments = token_stats.describe_runs(runs, data.tokens, data.fps)
    thumbs = []
    for j, (vid, start, duration) in enumerate(moments):
      video = data.videos.get(vid)
      if video is not None and video.video_path:
        name = _thumbnail(data, video.video_path, start + duration / 2, f"thumb_{i}_{j}.png")
        if name:
          thumbs.append(f'<img class="thumb" src="{H.esc(name)}" alt="{H.esc(vid)}">')
    rows.append((d["names"][i], d["labels"][i],
                 "; ".join(f"{vid} {start:.2f} s (+{duration:.2f} s)"
                           for vid, start, duration in moments), "".join(thumbs)))
  parts.append(H.paragraph(
      "The longest runs of each drawn token: video, start time, duration." +
      ("" if have_video else " Thumbnails need `video_path` in the manifest.")))
  parts.append(H.table(["token", "label", "longest runs", "frames"], rows, scroll=True,
                       raw_columns=(3,)))


def reconstruction(page, data):
  """Held-out videos against their reconstructions, and error by number of levels."""
  parts = page.section("reconstruction", "Reconstruction")
  held = S.held_out(data)
  if not held:
    parts.append(H.paragraph("No manifest videos to reconstruct.", "why"))
    return
  pyplot = S.plt()
  fig, axes = pyplot.subplots(len(held), 4, figsize=(15, 2.3 * len(held)), squeeze=False)
  for row, h in zip(axes, held):
    v = h["video"]
    t = np.arange(len(v.x)) / data.fps
    shown = np.argsort(-np.where(v.valid[:, None], v.x, 0).var(0))[:4]
    for ax, f in zip(row, shown):
      ax.plot(t, np.where(v.valid, v.x_raw[:, f], np.nan), "k-", lw=1, label="original")
      ax.plot(t, h["recon"][:, f], "C1-", lw=1, label="reconstruction")
      ax.set_title(f"{v.video_id} ({v.split}): {data.feature_names[f]}", fontsize=8)
      ax.tick_params(labelsize=7)
    row[0].legend(fontsize=6)
  for ax in axes[-1]:
    ax.set_xlabel("time (s)", fontsize=8)
  parts.append(H.paragraph("The four most varying features of each held-out video; gaps are "
                           "frames without a face."))
  parts.append(H.image(S.save(fig, data, "reconstruction.png"), "reconstructions"))
  with_prefix = [h for h in held if "prefix_mse" in h]
  last_eval = next((m for m in reversed(data.metrics) if "eval/recon/prefix1_mse" in m), {})
  if with_prefix:
    num_levels = len(with_prefix[0]["prefix_mse"])
    mine = np.mean([h["prefix_mse"] for h in with_prefix], axis=0)
    evals = [last_eval.get(f"eval/recon/prefix{l + 1}_mse", np.nan) for l in range(num_levels)]
    fig, ax = pyplot.subplots(figsize=(5, 3))
    levels = np.arange(1, num_levels + 1)
    ax.plot(levels, mine, "o-", label=f"these {len(with_prefix)} held-out videos")
    if np.isfinite(evals).any():
      ax.plot(levels, evals, "s--", label=f"eval split, step {last_eval.get('step')}")
    ax.set_xlabel("levels used (coarse to fine)")
    ax.set_ylabel("MSE (normalised units)")
    ax.set_xticks(levels)
    ax.legend(fontsize=7)
    parts.append(H.image(S.save(fig, data, "recon_by_levels.png"), "error by levels"))
    parts.append(H.table(["levels", "MSE here", "MSE eval (metrics.jsonl)"],
                         [(int(l), float(a), float(b)) for l, a, b in zip(levels, mine, evals)]))
