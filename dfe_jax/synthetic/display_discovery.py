"""Display discovery, measured: a trained tokenizer's codes against the classical dictionaries.

On a tokenized synthetic corpus (whose displays are known), every method is fitted on the same
frames, normalised the way the model saw them (the training split's subjects), and scored by
`discovery`:

- **dictionary recovery**: the tokens' atoms are their codes' decoded effects
  (`tokenizer.code_effects`, normalised units), one per code the corpus uses, weighted by use;
  the baselines' atoms come from `discovery.fit_baselines`; each method beside its own null of
  random training frames with as many atoms;
- **step-level recovery**: which displays are active at a latent step (mean activation over its
  frames above `threshold`), predicted on held-out subjects (the val and test splits) from the
  step's bag of tokens, from residual k-means codes of the step's mean frame with the same
  L x K budget (fitted on the training steps), and from the raw step means (multi-label
  one-vs-rest logistic regression, macro AUROC); and NMI of each level's codes with the dominant
  display.

`write` and `read` are the one writer and reader of its output, `discovery.json` (with
`format_version`; files without one read as 1) and `discovery.md`.
"""

import json
import os

import numpy as np

from dfe_jax.formats import filesystem
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import outputs
from dfe_jax.formats import tokens as tokens_format
from dfe_jax.formats import versioned_json
from dfe_jax.synthetic import discovery
from dfe_jax.synthetic import token_recovery
from dfe_jax.tokenizer import code_effects

TOKENS = "DFE tokens"
HELD_OUT_SPLITS = ("val", "test")
MAX_STEPS = 20_000  # Steps per side for the step-level fits: seconds on 2 cores.
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)


class DiscoveryResultsError(ValueError):
  """discovery.json is missing, unreadable or of an unknown version; the message names it."""


class DiscoveryResultsNotFoundError(DiscoveryResultsError, FileNotFoundError):
  """There is no discovery.json where one was expected."""


SPEC = versioned_json.JsonFormat(
    file_name="discovery.json", kind="discovery results", versions=READABLE_VERSIONS,
    remedy="re-run python -m dfe_jax.discover, or update dfe_jax",
    produced_by="python -m dfe_jax.discover", error=DiscoveryResultsError,
    not_found_error=DiscoveryResultsNotFoundError, unversioned=1,
    required_keys=("dictionary", "steps"))


def read_displays(manifest):
  """The ground-truth display loadings [G, D] written beside a synthetic corpus's manifest."""
  path = os.path.join(os.path.dirname(manifest), "displays.npz")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no displays.npz beside the manifest; display discovery "
                            "needs the synthetic corpus (python -m dfe_jax.synth)")
  return outputs.load_npz(path)["loadings"].astype(np.float64)


def token_atoms(trained, codes_NL, null_frames_NF):
  """The tokens as a `discovery.Atoms` (each code the corpus uses: its effect, by its use) and
  the (level, code) of each atom; level -1 stands for every level of a shared codebook."""
  q = trained.config.model.quantizer
  effects_LKF = code_effects.token_effects(trained)
  if q.shared_codebook:
    counts_LK = np.bincount(codes_NL[codes_NL >= 0], minlength=q.codebook_size)[None]
  else:
    counts_LK = np.stack([np.bincount(c[c >= 0], minlength=q.codebook_size)
                          for c in codes_NL.T])
  level, code = np.nonzero(counts_LK)
  atoms = discovery.Atoms(effects_LKF[level, code], usage_M=counts_LK[level, code].astype(float),
                          null_frames_NF=null_frames_NF)
  levels = np.full_like(level, -1) if q.shared_codebook else level
  return atoms, np.stack([levels, code], 1)


def _capped(rng, *arrays):
  n = len(arrays[0])
  keep = np.sort(rng.choice(n, MAX_STEPS, replace=False)) if n > MAX_STEPS else slice(None)
  return [a[keep] for a in arrays]


def step_recovery(steps, codes_NL, train_N, *, codebook_size, threshold, seed):
  """Macro AUROC of the active displays on held-out subjects, and NMI by level, per method."""
  active_NG = steps.activity_NG > threshold
  rng = np.random.default_rng(seed)
  means_tr, codes_tr, y_tr = _capped(rng, steps.means_NF[train_N], codes_NL[train_N],
                                     active_NG[train_N])
  means_te, codes_te, y_te, label_te = _capped(rng, steps.means_NF[~train_N], codes_NL[~train_N],
                                               active_NG[~train_N], steps.label_N[~train_N])
  num_levels = codes_NL.shape[1]
  centroids, _, _ = discovery.residual_kmeans(means_tr, codebook_size=codebook_size,
                                              num_levels=num_levels, seed=seed)
  rkm_tr, rkm_te = (discovery.residual_codes(m, centroids) for m in (means_tr, means_te))
  features = {
      TOKENS: (discovery.one_hot_codes(codes_tr, codebook_size),
               discovery.one_hot_codes(codes_te, codebook_size), codes_te),
      "residual k-means": (discovery.one_hot_codes(rkm_tr, codebook_size),
                           discovery.one_hot_codes(rkm_te, codebook_size), rkm_te),
      "raw step means": (means_tr, means_te, None),
  }
  result = {}
  for name, (x_tr, x_te, codes) in features.items():
    auroc = discovery.multilabel_auroc(x_tr, y_tr, x_te, y_te)
    result[name] = {"macro_auroc": auroc["macro_auroc"], "num_scored": auroc["num_scored"],
                    "nmi_by_level": (discovery.nmi_by_level(codes, label_te)
                                     if codes is not None else None)}
  return {"num_train_steps": int(len(y_tr)), "num_heldout_steps": int(len(y_te)),
          "active_fraction": float(active_NG.any(1).mean()),
          "multi_display_fraction": float((active_NG.sum(1) >= 2).mean()),
          "methods": result}


def evaluate(trained, tokens_path, manifest, split_of, *, threshold=0.25, seed=0):
  """Dictionary and step-level recovery of the tokens and every baseline (module docstring).

  `split_of` maps video ids to their ingest split; the training split's subjects give the
  frames every method is fitted on, the others the held-out steps.
  """
  tokens = tokens_format.read(tokens_path)
  steps = token_recovery.corpus_steps(tokens, manifest, trained.info, threshold)
  train_subjects = _train_subjects(tokens, manifest, split_of)
  if not train_subjects:
    raise ValueError("no video of the tokens is in the training split; pass the ingest folder "
                     "that the model trained on (its videos.csv gives the splits)")
  frames_NF = np.concatenate([steps.frames_by_subject[s] for s in sorted(train_subjects)])
  std_F = code_effects.feature_std(trained.info)
  displays_GF = discovery.display_directions(read_displays(manifest), std_F)
  q = trained.config.model.quantizer
  codes_NL = tokens["codes"][steps.rows_N]
  methods = {}
  methods[TOKENS], token_codes = token_atoms(trained, codes_NL, frames_NF)
  methods.update(discovery.fit_baselines(
      frames_NF, codebook_size=q.codebook_size, num_levels=q.num_levels,
      num_displays_oracle=len(displays_GF), seed=seed))
  scores = discovery.score_methods(methods, displays_GF, seed=seed)
  train_N = np.isin(steps.subject_N, list(train_subjects))
  return _jsonable({
      "num_displays": int(len(displays_GF)),
      "num_train_frames": int(len(frames_NF)),
      "threshold": threshold,
      "dictionary": scores,
      "token_codes": token_codes.tolist(),  # (level or -1 for shared, code) of each token atom
      "steps": step_recovery(steps, codes_NL, train_N, codebook_size=q.codebook_size,
                             threshold=threshold, seed=seed),
  })


def _train_subjects(tokens, manifest, split_of):
  """Subjects with a training-split video among the tokens."""
  subject_of = {r["video_id"]: r["subject_id"] for r in manifest_format.read(manifest)}
  return {subject_of[str(v)] for v in tokens["video_id"]
          if split_of.get(str(v)) == "train" and str(v) in subject_of}


def _jsonable(value):
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  return value


def verdict(result):
  """One plain sentence: which method recovers the displays best, and where the tokens stand."""
  fair = {n: s for n, s in result["dictionary"].items() if not s["is_oracle"]}
  best = max(fair, key=lambda n: fair[n]["mean"])
  tokens = result["dictionary"][TOKENS]
  steps = result["steps"]["methods"]
  step_best = max(steps, key=lambda n: steps[n]["macro_auroc"])
  return (f"Dictionary recovery: {best} recovers the {result['num_displays']} displays best "
          f"(mean best cosine {fair[best]['mean']:.3f}, {fair[best]['num_found']} found); "
          f"DFE tokens {tokens['mean']:.3f} ({tokens['num_found']} found), "
          f"{'above' if tokens['beats_null'] else 'NOT above'} their random-frame null "
          f"({tokens['null']['mean']:.3f}). Step-level recovery on held-out subjects: "
          f"{step_best} best (macro AUROC {steps[step_best]['macro_auroc']:.3f}); DFE tokens "
          f"{steps[TOKENS]['macro_auroc']:.3f}, residual k-means with the same budget "
          f"{steps['residual k-means']['macro_auroc']:.3f}.")


def markdown(result):
  """The discovery tables: dictionary recovery per method, step-level recovery, the verdict."""
  steps = result["steps"]
  lines = [
      f"Display discovery: {result['num_displays']} ground-truth displays; every method fitted "
      f"on the same {result['num_train_frames']} normalised training frames.", "",
      discovery.format_table(result["dictionary"]), "",
      f"Step-level recovery: which displays are active at a latent step (mean activation > "
      f"{result['threshold']:g}; {100 * steps['multi_display_fraction']:.0f}% of steps show two "
      f"or more), predicted on {steps['num_heldout_steps']} held-out steps after fitting on "
      f"{steps['num_train_steps']}:", "",
      "| features | macro AUROC | NMI by level (dominant display) |", "|---|---:|---|"]
  for name, m in steps["methods"].items():
    nmi = ", ".join(f"{v:.2f}" for v in m["nmi_by_level"]) if m["nmi_by_level"] else "—"
    lines.append(f"| {name} | {m['macro_auroc']:.3f} | {nmi} |")
  lines += ["", verdict(result)]
  return "\n".join(lines)


def write(result, output_dir):
  """`discovery.json` and `discovery.md` in `output_dir`, each whole or not at all."""
  filesystem.makedirs(output_dir)
  with outputs.atomic_open(os.path.join(output_dir, "discovery.json")) as f:
    json.dump({"format_version": FORMAT_VERSION, **result}, f, indent=1)
  with outputs.atomic_open(os.path.join(output_dir, "discovery.md")) as f:
    f.write(markdown(result) + "\n")


def read(path):
  """The results in `discovery.json` (or in the folder `path`), version checked."""
  return versioned_json.read(path, SPEC)
