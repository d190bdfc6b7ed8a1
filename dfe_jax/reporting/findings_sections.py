"""The report's findings: display discovery against the classical baselines, and the probes.

Both read what their commands wrote (`discovery.json` of `dfe-discover`, `results.json` of
`dfe-probe`); without them the section says how to make them.
"""

import os

import numpy as np

from dfe_jax.probing import results_table
from dfe_jax.reporting import html_page as H
from dfe_jax.reporting import token_dictionary
from dfe_jax.synthetic import discovery as discovery_lib
from dfe_jax.synthetic import display_discovery
from dfe_jax.tokenizer import code_effects


def token_name(level, code):
  """`T17` for a shared-codebook code (level -1), `L2:T17` for level 2's own codebook."""
  return f"T{code}" if level < 0 else f"L{level + 1}:T{code}"


def discovery(page, data):
  """Dictionary and step-level recovery of the displays, tokens beside every baseline."""
  parts = page.section("discovery", "Display discovery (synthetic corpus)")
  result = data.discovery
  if result is None:
    parts.append(H.paragraph(
        "No discovery.json: on the synthetic corpus, run `python -m dfe_jax.discover` and pass "
        "its folder with --discovery.", "why"))
    return
  parts.append(H.paragraph(display_discovery.verdict(result)))
  rows = []
  for name, s in result["dictionary"].items():
    label = name + (" (oracle: told G)" if s["is_oracle"] else "") + (
        " (|cos|)" if s["sign_invariant"] else "") + ("" if s["converged"] else " (not converged)")
    null = "—" if s["null"] is None else H.fmt(s["null"]["mean"])
    rows.append((label, s["num_atoms"], H.fmt(s["mean"]), H.fmt(s["min"]),
                 f"{s['num_found']}/{s['num_displays']}", H.fmt(s["purity"]), null,
                 "yes" if s["beats_null"] else "no"))
  parts.append(H.table(["method", "atoms", "mean best cosine", "min", "found (≥ 0.9)",
                        "purity", "null mean", "beats its null"], rows))
  parts.append(H.paragraph(
      f"Every method is fitted on the same {result['num_train_frames']} normalised training "
      "frames. Best cosine: for each ground-truth display (its loading divided by the training "
      "std, the model's feature space), the closest atom. Token atoms are the decoded effects of "
      "the codes the corpus uses, purity weighted by use. The null draws as many random "
      "training frames as the method has atoms; a method beats it when its mean is above the "
      "null's by three standard deviations of the null's draws."))
  steps = result["steps"]
  step_rows = [(name, H.fmt(m["macro_auroc"]), ", ".join(
      f"{v:.2f}" for v in m["nmi_by_level"]) if m["nmi_by_level"] else "—")
               for name, m in steps["methods"].items()]
  parts.append(H.table(["features of a latent step", "macro AUROC (held-out subjects)",
                        "NMI by level 1..L"], step_rows))
  parts.append(H.paragraph(
      f"Active displays (mean activation over the step above {result['threshold']:g}; "
      f"{100 * steps['multi_display_fraction']:.0f}% of steps show two or more) predicted on "
      f"{steps['num_heldout_steps']} steps of held-out subjects by one-vs-rest logistic "
      f"regression fitted on {steps['num_train_steps']} training steps."))
  parts.append(_matches(data, result))


def _matches(data, result):
  """Each display beside the token that matches it best, as profiles over the features."""
  manifest = data.manifest
  if not manifest:
    return H.paragraph("No manifest: the displays cannot be drawn.", "why")
  try:
    loadings_GF = display_discovery.read_displays(manifest)
  except FileNotFoundError as e:
    return H.paragraph(str(e), "why")
  displays_GF = discovery_lib.display_directions(loadings_GF, code_effects.feature_std(
      data.trained.info))
  effects_LKF = code_effects.token_effects(data.trained)
  tokens = result["dictionary"][display_discovery.TOKENS]
  rows, titles = [], []
  for g, (atom, cosine) in enumerate(zip(tokens["best_atom_by_display"],
                                         tokens["best_cosine_by_display"])):
    level, code = result["token_codes"][atom]
    effect = effects_LKF[max(level, 0), code]
    rows += [displays_GF[g] / np.abs(displays_GF[g]).max(), effect / np.abs(effect).max()]
    titles += [f"display {g}", f"{token_name(level, code)} (cosine {cosine:.2f})"]
  name = "discovery_matches.png"
  token_dictionary.plot_profiles(os.path.join(data.output_dir, name), np.stack(rows), titles,
                                 data.feature_names, columns=4,
                                 ylabel="shape (scaled to max 1)")
  return H.image(name, "each ground-truth display beside its best-matching token")


def probes(page, data):
  """The probe table: DFE bag-of-words against every baseline."""
  parts = page.section("probes", "Probes")
  if data.probe is None:
    parts.append(H.paragraph("No results.json: run `python -m dfe_jax.probe` and pass its "
                             "folder with --probe.", "why"))
    return
  headers, rows = results_table.main_table(data.probe)
  parts.append(H.table(headers, rows))
  cv = data.probe["provenance"]["config"]["cv"]
  parts.append(H.paragraph(
      f"{data.probe['data']['num_videos']} videos, {data.probe['data']['num_subjects']} "
      f"subjects; subject-grouped {cv['folds']}-fold cross-validation × {cv['repeats']} "
      "repeats; cells are the mean over repeats [95% t-interval]."))
