"""What each token does: a label for its decoded effect (`tokenizer.code_effects`), and plots.

Legend: K codes, L levels, S latent steps, T frames, D features.
"""

import jax.numpy as jnp
import numpy as np

from dfe_jax.formats import feature_spaces
from dfe_jax.tokenizer import code_effects

def rank_scale(info, feature_names):
  """Per-feature weights for ranking a token's features: input units for the known spaces
  (blendshape weights and FLAME coefficients are commensurate), z-units for custom ones."""
  if info.get("feature_space") in feature_spaces.SPACES:
    return np.ones(len(feature_names), np.float32)
  return 1.0 / np.maximum(code_effects.feature_std(info), 1e-8)


def label(effect_D, feature_names, scale_D, max_terms=3):
  """A readable label from the strongest features, e.g. 'mouthSmileLeft +0.61, jawOpen +0.20'."""
  strength = np.abs(effect_D) * scale_D
  order = np.argsort(-strength)
  top = strength[order[0]] if len(order) else 0.0
  if top <= 0:
    return "(no effect)"
  terms = [f"{feature_names[i]} {effect_D[i]:+.2f}" for i in order[:max_terms]
           if strength[i] >= 0.3 * top]
  return ", ".join(terms)


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _group_colours(feature_names):
  """One colour per feature group (brow, eye, mouth, exp, jaw, ...), for bar plots."""
  plt = _plt()
  groups = feature_spaces.feature_groups(feature_names)
  palette = plt.get_cmap("tab10")
  colours = [None] * len(feature_names)
  for g, (_, indices) in enumerate(sorted(groups.items())):
    for i in indices:
      colours[i] = palette(g % 10)
  return colours, groups


def _group_legend(fig, feature_names):
  """A legend of the bar colours: which feature group each colour is."""
  plt = _plt()
  colours, groups = _group_colours(feature_names)
  handles = [plt.Rectangle((0, 0), 1, 1, color=colours[indices[0]])
             for _, indices in sorted(groups.items())]
  fig.legend(handles, [name for name, _ in sorted(groups.items())], loc="upper center",
             ncol=min(len(handles), 8), fontsize=7, frameon=False, title="feature group",
             title_fontsize=7)


def plot_profiles(path, effects_ND, titles, feature_names, *, columns=6,
                  ylabel="effect (input units)"):
  """Small-multiple bar plots of token profiles over the features (x: the features in input
  order, coloured by group), top features named."""
  plt = _plt()
  count = len(effects_ND)
  columns = max(1, min(columns, count))
  rows = -(-count // columns)
  colours, _ = _group_colours(feature_names)
  fig, axes = plt.subplots(rows, columns, figsize=(2.5 * columns, 1.7 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  x = np.arange(len(feature_names))
  for ax, effect, title in zip(axes.flat, effects_ND, titles):
    ax.axis("on")
    ax.bar(x, effect, color=colours, width=0.9)
    ax.axhline(0, color="k", lw=0.4)
    ax.set_xticks([])
    ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=7)
    for i in np.argsort(-np.abs(effect))[:2]:
      ax.annotate(feature_names[i], (i, effect[i]), fontsize=5.5, ha="center",
                  va="bottom" if effect[i] >= 0 else "top")
  for row in axes:
    row[0].set_ylabel(ylabel, fontsize=7)
  _group_legend(fig, feature_names)
  fig.tight_layout(pad=0.4, rect=(0, 0, 1, 0.93))
  fig.savefig(path, dpi=90)
  plt.close(fig)


def plot_profile_matrix(path, effects_ND, row_names, feature_names):
  """Heat map tokens x features of the effects (symmetric colour scale), every name shown."""
  plt = _plt()
  vmax = float(np.abs(effects_ND).max()) or 1.0
  height = 1.2 + 0.16 * len(row_names)
  fig, ax = plt.subplots(figsize=(2.0 + 0.16 * len(feature_names), height))
  image = ax.imshow(effects_ND, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto",
                    interpolation="nearest")
  ax.set_xticks(np.arange(len(feature_names)), feature_names, rotation=90, fontsize=6)
  ax.set_yticks(np.arange(len(row_names)), row_names, fontsize=6)
  fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01, label="effect (input units)")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def prefix_decodings(trained, codes_SL):
  """Decodings [L, T, D] (normalised units) of one sequence from its first 1, 2, ... L levels."""
  num_levels = codes_SL.shape[1]
  keep_LL = np.arange(num_levels)[None, :] < np.arange(1, num_levels + 1)[:, None]
  codes_LSL = np.where(keep_LL[:, None, :], codes_SL[None], -1).astype(np.int32)
  return np.asarray(code_effects.decoder(trained)(trained.variables, jnp.asarray(codes_LSL)))


def plot_composition(path, frames, feature_names):
  """Per real frame: its features beside the decodings from the first 1..L levels.

  `frames` holds dicts with `title`, `original` [D] and `prefix` [L, D], all in input units.
  """
  plt = _plt()
  fig, axes = plt.subplots(len(frames), 1, figsize=(11, 2.3 * len(frames)), squeeze=False)
  x = np.arange(len(feature_names))
  for ax, frame in zip(axes[:, 0], frames):
    ax.plot(x, frame["original"], "k-", lw=2, label="frame")
    cmap = plt.get_cmap("viridis")
    num_levels = len(frame["prefix"])
    for l, decoded in enumerate(frame["prefix"]):
      ax.plot(x, decoded, "-", lw=1, color=cmap(l / max(num_levels - 1, 1)),
              label=f"levels 1..{l + 1}")
    ax.set_title(frame["title"], fontsize=8)
    ax.set_xticks(x, feature_names, rotation=90, fontsize=5)
    ax.tick_params(axis="y", labelsize=7)
  axes[0, 0].legend(fontsize=6, ncol=min(8, len(frames[0]["prefix"]) + 1), loc="upper right")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
