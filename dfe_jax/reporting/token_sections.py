"""The report's sections, in page order; each takes (page, ReportData) and writes its PNGs.

Tokens are named `T17` with a shared codebook (the same code at any level) and `L2:T17` with
per-level codebooks. Faces and profiles are drawn for the `top_tokens` most used; the table
lists every code.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from dfe_jax.formats import normalization
from dfe_jax.reporting import face_render
from dfe_jax.reporting import html_page as H
from dfe_jax.reporting import token_dictionary
from dfe_jax.reporting import token_stats
from dfe_jax.tokenizer import code_effects

HELD_OUT_SPLITS = ("test", "val")


def plt():
  """matplotlib.pyplot on the Agg backend."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save(fig, data, name):
  """Writes a figure as `name` in the report folder; returns the name."""
  fig.tight_layout()
  fig.savefig(os.path.join(data.output_dir, name), dpi=90)
  plt().close(fig)
  return name


def _q(data):
  return data.trained.config.model.quantizer


def has_tokens(data):
  return data.tokens is not None and _q(data).kind == "rvq"


def token_table(data):
  """Token table shared by the sections: effects, names, usage, runs, the drawn subset."""
  if "tokens" in data.cache:
    return data.cache["tokens"]
  q, tokens = _q(data), data.tokens
  effects = (code_effects.token_effects(data.trained)           # [Le, K, D], input units
             * code_effects.feature_std(data.trained.info))
  counts = token_stats.usage_counts(tokens, q.codebook_size)      # [L, K]
  shared = q.shared_codebook
  # One entry per token: (level or None, code); usage over all levels when shared.
  entries = ([(None, k) for k in range(q.codebook_size)] if shared else
             [(l, k) for l in range(q.num_levels) for k in range(q.codebook_size)])
  usage = np.array([counts[:, k].sum() if l is None else counts[l, k] for l, k in entries])
  eff = np.stack([effects[0 if l is None else l, k] for l, k in entries])
  names = [f"T{k}" if l is None else f"L{l + 1}:T{k}" for l, k in entries]
  scale = token_dictionary.rank_scale(data.trained.info, data.feature_names)
  labels = [token_dictionary.label(e, data.feature_names, scale) for e in eff]
  order = np.lexsort((-np.abs(eff).max(1), -usage))
  # Only tokens that fire are drawn; a never-used code's decoding says nothing about the data.
  top = [int(i) for i in order if usage[i] > 0][:data.options.top_tokens]
  run_table = token_stats.runs(tokens)
  data.cache["tokens"] = dict(entries=entries, usage=usage, effects=eff, names=names,
                              labels=labels, top=top, counts=counts, runs=run_table)
  return data.cache["tokens"]


def overview(page, data):
  """Model, data and provenance; notes on what could not be shown."""
  t, info, c = data.trained, data.trained.info, data.trained.config
  parts = page.section("overview", "Overview")
  q = c.model.quantizer
  rows = [("workdir", data.workdir), ("checkpoint step", t.step),
          ("model", f"{c.model.name}, code_dim {c.model.code_dim}, downsample x"
                    f"{2 ** c.model.downsample_log2}"),
          ("quantizer", f"{q.kind}: {q.num_levels} levels x {q.codebook_size} codes, "
                        f"{'shared' if q.shared_codebook else 'per-level'} codebook"),
          ("features", f"{info.get('feature_space')} ({len(data.feature_names)}), {data.fps:g} fps"),
          ("tokens (usage, runs and co-occurrence count every video in them, all splits)",
           data.tokens_source or "none"),
          ("held-out videos (reconstructions) from", data.split_source),
          ("videos read", len(data.videos))]
  jitters = {v: video.jitter for v, video in data.videos.items() if np.isfinite(video.jitter)}
  if jitters:
    worst = max(jitters, key=jitters.get)
    rows.append(("blendshape jitter", f"median {np.median(list(jitters.values())):.4f} over "
                 f"{len(jitters)} videos (highest {jitters[worst]:.4f}, {worst}): the typical "
                 "frame-to-frame mean |Δ| of the 51 blendshapes. MediaPipe's single-face "
                 "tracking of a steady webcam face gives about 0.003; well above that, tracking "
                 "noise takes a share of the tokens"))
  parts.append(H.table(["", ""], rows))
  for note in data.notes:
    parts.append(H.paragraph(note, "why"))


def training(page, data):
  """Training curves from metrics.jsonl."""
  parts = page.section("training", "Training curves")
  if not data.metrics:
    parts.append(H.paragraph("No metrics.jsonl in the workdir.", "why"))
    return
  pyplot = plt()
  series = lambda key: [(m["step"], m[key]) for m in data.metrics if key in m]
  fig, axes = pyplot.subplots(1, 3, figsize=(14, 3.4))
  for key in ("train/loss/total", "train/loss/recon", "eval/recon_mse"):
    if series(key):
      axes[0].plot(*zip(*series(key)), ".-" if key.startswith("eval") else "-", label=key)
  axes[0].set_yscale("log")
  axes[0].set_title("loss")
  for key in ("eval/recon_cosine",):
    if series(key):
      axes[1].plot(*zip(*series(key)), ".-", label=key)
  axes[1].set_title("eval reconstruction cosine")
  for l in range(_q(data).num_levels):
    for split, style in (("train", "-"), ("eval", ".--")):
      s = series(f"{split}/vq/level{l}/perplexity")
      if s:
        axes[2].plot(*zip(*s), style, label=f"{split} level {l + 1}", color=f"C{l}")
  axes[2].set_title("code perplexity per level")
  for ax in axes:
    ax.set_xlabel("step")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=6)
  parts.append(H.image(save(fig, data, "training_curves.png"), "training curves"))


def usage(page, data):
  """Per-level usage histograms and perplexity."""
  parts = page.section("usage", "Token usage per level")
  if not has_tokens(data):
    parts.append(H.paragraph("No tokens: pass --tokens, or a --manifest to encode.", "why"))
    return
  d = token_table(data)
  counts, pyplot = d["counts"], plt()
  fig, axes = pyplot.subplots(1, len(counts), figsize=(3.2 * len(counts), 2.8), squeeze=False)
  for l, ax in enumerate(axes[0]):
    ranked = np.sort(counts[l])[::-1]
    ax.bar(np.arange(len(ranked)), ranked, width=1.0, color=f"C{l}")
    ax.set_yscale("log")
    ax.set_title(f"level {l + 1}", fontsize=9)
    ax.set_xlabel("codes by rank", fontsize=8)
  parts.append(H.image(save(fig, data, "usage_levels.png"), "usage per level"))
  last_eval = next((m for m in reversed(data.metrics) if "eval/vq/level0/perplexity" in m), {})
  rows = [(l + 1, int(counts[l].sum()), int((counts[l] > 0).sum()),
           token_stats.perplexity(counts[l]),
           last_eval.get(f"eval/vq/level{l}/perplexity", float("nan")))
          for l in range(len(counts))]
  parts.append(H.table(["level", "steps", "codes used", "perplexity (these tokens)",
                        "perplexity (last eval)"], rows))


def dictionary(page, data):
  """The token dictionary: faces, profiles, and a table of every code."""
  parts = page.section("dictionary", "Token dictionary")
  if not has_tokens(data):
    parts.append(H.paragraph("No tokens to describe.", "why"))
    return
  d = token_table(data)
  top, total = d["top"], max(int(d["usage"].sum()), 1)
  parts.append(H.paragraph(
      "Each token decoded alone (one level, the others skipped) minus the all-skipped "
      "decoding, at the centre frame: its effect on the expression vector in input units. "
      f"The {len(top)} most used tokens (of {int((d['usage'] > 0).sum())} in use) are drawn; every code is in the table below."))
  titles = [f"{d['names'][i]} ({100 * d['usage'][i] / total:.1f}%)" for i in top]
  face_mesh, why = mesh(data)
  if face_mesh is not None:
    face_render.draw_face_grid(os.path.join(data.output_dir, "token_faces.png"), face_mesh,
                               d["effects"][top], titles)
    parts.append("<h3>Faces</h3>" + H.paragraph(
        "Face deformed by each token's effect; colour is per-vertex displacement (own scale per "
        "face, maximum in the title)."))
    parts.append(H.image("token_faces.png", "token faces"))
  else:
    parts.append(H.paragraph(f"No faces: {why}", "why"))
  token_dictionary.plot_profiles(os.path.join(data.output_dir, "token_profiles.png"),
                                 d["effects"][top], titles, data.feature_names)
  token_dictionary.plot_profile_matrix(os.path.join(data.output_dir, "token_matrix.png"),
                                       d["effects"][top], [d["names"][i] for i in top],
                                       data.feature_names)
  parts.append("<h3>Profiles</h3>" + H.image("token_profiles.png", "token profiles"))
  parts.append(H.image("token_matrix.png", "token by feature matrix"))
  mean_run = token_stats.mean_run(d["runs"], _q(data).codebook_size)
  factor = 2 ** data.trained.config.model.downsample_log2
  rows = []
  for i in np.argsort(-d["usage"], kind="stable"):
    l, k = d["entries"][i]
    rows.append((d["names"][i], int(d["usage"][i]), 100 * d["usage"][i] / total,
                 " ".join(str(int(c)) for c in d["counts"][:, k]),
                 mean_run[k] * factor if np.isfinite(mean_run[k]) else float("nan"),
                 d["labels"][i]))
  parts.append("<h3>All tokens</h3>" + H.table(
      ["token", "uses", "%", "uses per level", f"mean run (frames; one step = {factor})",
       "label (strongest features)"],
      rows, scroll=True))


def mesh(data):
  """(Mesh, None) or (None, why no faces), built once."""
  if "mesh" not in data.cache:
    try:
      data.cache["mesh"] = face_render.mesh_for(data.trained.info.get("feature_space"),
                                                data.feature_names, data.flame_model)
    except (OSError, ValueError) as e:
      data.cache["mesh"] = (None, f"the FLAME model could not be used ({e})")
  return data.cache["mesh"]


def held_out(data):
  """Held-out videos with their codes [S, L] and full reconstructions (input units)."""
  if "held" in data.cache:
    return data.cache["held"]
  videos = [v for v in data.videos.values() if v.split in HELD_OUT_SPLITS]
  videos = (videos or list(data.videos.values())[-data.options.heldout_videos:])
  videos = videos[:data.options.heldout_videos]
  t, stats = data.trained, data.trained.info["normalization"]
  # The variables go in as an argument: closed over, XLA would constant-fold the whole model.
  forward = jax.jit(t.model.apply)
  held = []
  for v in videos:
    offset, scale = normalization.offset_and_scale(stats, v.subject_id)
    recon, aux = forward(t.variables, jnp.asarray(v.x[None]), jnp.asarray(v.valid[None]))
    entry = dict(video=v, offset=offset, scale=scale,
                 recon=np.asarray(recon[0]) * scale + offset, prefix=None)
    if _q(data).kind == "rvq":
      codes = np.asarray(aux["codes"][0])
      entry["codes"] = codes
      prefix = token_dictionary.prefix_decodings(t, codes)[:, :len(v.x)]
      entry["prefix_mse"] = [float(np.mean((p[v.valid] - v.x[v.valid]) ** 2)) for p in prefix]
      entry["prefix"] = prefix * scale + offset
    held.append(entry)
  data.cache["held"] = held
  return held


def composition(page, data):
  """Decoding real frames from their first 1..L levels of codes."""
  parts = page.section("composition", "Compositional decoding")
  held = [h for h in held_out(data) if h.get("prefix") is not None]
  if not held:
    parts.append(H.paragraph("Needs a tokenized model and held-out videos.", "why"))
    return
  frames = []
  for n in range(data.options.composition_frames):
    h = held[n % len(held)]
    v = h["video"]
    energy = np.where(v.valid, np.abs(v.x).sum(1), -1)
    t = int(np.argsort(-energy)[n // len(held)])  # The most expressive valid frames.
    frames.append(dict(title=f"{v.video_id} at {t / data.fps:.2f} s", original=v.x_raw[t],
                       prefix=h["prefix"][:, t]))
  token_dictionary.plot_composition(os.path.join(data.output_dir, "composition.png"), frames,
                                    data.feature_names)
  parts.append(H.paragraph("Each real frame beside the decoding of its first 1, 2, ... L levels "
                           "of codes (coarse to fine)."))
  face_mesh, _ = mesh(data)
  if face_mesh is not None:
    num_levels = len(frames[0]["prefix"])
    vectors = [x for f in frames for x in [f["original"], *f["prefix"]]]
    titles = [f"{f['title']}" if j == 0 else f"levels 1..{j}" for f in frames
              for j in range(num_levels + 1)]
    face_render.draw_face_grid(os.path.join(data.output_dir, "composition_faces.png"), face_mesh,
                               np.stack(vectors), titles, columns=num_levels + 1)
    parts.append(H.image("composition_faces.png", "compositional decoding faces"))
  parts.append(H.image("composition.png", "compositional decoding profiles"))
