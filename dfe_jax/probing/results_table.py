"""Renders probe results as `results.md`: the table, paired comparisons and DFE's top tokens."""

METRIC_TITLES = {"f1": "macro F1", "accuracy": "acc", "balanced_accuracy": "bal. acc",
                 "auroc": "AUROC", "pearson_r": "Pearson r", "mae": "MAE",
                 "one_minus_mae": "1-MAE"}

# The Markdown keeps two headline metrics per task type; results.json has the paired test for all.
PAIRED_IN_TABLE = {"classification": ("f1", "auroc"), "regression": ("pearson_r", "mae")}


def _cell(summary):
  mean, (low, high) = summary["mean"], summary["ci95"]
  if mean is None or mean != mean:
    return "n/a"
  if summary.get("n", 0) < 2:
    return f"{mean:.3f}"
  return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def main_table(results):
  """The headline table: (headers, rows of cells), one row per representation."""
  tasks = results["tasks"]
  names = []
  for task in tasks.values():
    names += [n for n in task["representations"] if n not in names]
  columns = [(t, m) for t, task in tasks.items()
             for m in next(iter(task["representations"].values()))["metrics"]]
  headers = ["representation"] + [f"{t} {METRIC_TITLES[m]}" for t, m in columns]
  rows = [[name] + [_cell(tasks[t]["representations"][name]["metrics"][m])
                    if name in tasks[t]["representations"] else "" for t, m in columns]
          for name in names]
  return headers, rows


def markdown(results):
  """The whole report as Markdown text."""
  tasks = results["tasks"]
  provenance = results["provenance"]
  cv = provenance["config"]["cv"]
  lines = ["# Probe results", "",
           f"{results['data']['num_videos']} videos, {results['data']['num_subjects']} subjects; "
           f"subject-grouped {cv['folds']}-fold CV × {cv['repeats']} repeats (seeds "
           f"{provenance['seeds']}), hyperparameters chosen by {cv['inner_folds']}-fold inner CV "
           "on training folds only. Cells: mean over repeats [95% t-interval over repeats].", ""]
  if results.get("protocol"):
    lines += [results["protocol"], ""]
  headers, rows = main_table(results)
  lines.append("| " + " | ".join(headers) + " |")
  lines.append("|---" * len(headers) + "|")
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  for task_name, task in tasks.items():
    if not task.get("paired_vs_dfe"):
      continue
    lines += ["", f"## {task_name}: DFE minus baseline, per outer fold",
              "", f"{task['type']}, {task['num_videos']} videos, {task['num_subjects']} subjects"
              + (f", {task['dropped_missing_label']} dropped for a missing label"
                 if task["dropped_missing_label"] else "")
              + ". Corrected resampled t-test (Nadeau & Bengio); wins/losses count folds.", "",
              "| baseline | metric | mean difference [95% CI] | p | wins/losses |",
              "|---|---|---|---|---|"]
    for baseline, per_metric in task["paired_vs_dfe"].items():
      for metric in PAIRED_IN_TABLE[task["type"]]:
        cmp = per_metric[metric]
        low, high = cmp["ci95"]
        ci = f"{cmp['mean_difference']:+.3f} [{low:+.3f}, {high:+.3f}]" if low == low else "n/a"
        p_value = f"{cmp['p_value']:.3g}" if cmp["p_value"] == cmp["p_value"] else "n/a"
        lines.append(f"| {baseline} | {METRIC_TITLES[metric]} | {ci} | {p_value} | "
                     f"{cmp['wins']}/{cmp['losses']} |")
  for task_name, task in tasks.items():
    if "top_tokens" not in task:
      continue
    lines += ["", f"## {task_name}: DFE tokens that push the label most",
              "", "Coefficients of the model refitted on all labelled videos (z-scored features). "
              "`tN` is token id N of the shared codebook; `Lk:` names the level when the "
              "vocabulary is per level.", ""]
    for target, sides in task["top_tokens"].items():
      for side, entries in sides.items():
        listed = ", ".join(f"{e['name']} ({e['coefficient']:+.2f})" for e in entries)
        lines.append(f"- {side} {task_name} = {target}: {listed}")
    if task.get("token_levels"):
      shares = "; ".join(f"T{i}: " + "/".join(f"{s:.2f}" for s in levels)
                         for i, levels in task["token_levels"].items())
      lines.append(f"- share of each listed token's uses at levels 0..L-1: {shares}")
  lines += ["", f"Versions: {provenance['versions']}; git {provenance['git_revision']}.", ""]
  return "\n".join(lines)
