"""The main job's summary: reconstruction, codebook use, display recovery and the probe table."""

import os

from dfe_jax.formats import metrics_log
from dfe_jax.formats import probe_results
from dfe_jax.synthetic import display_discovery
from dfe_jax.synthetic import token_recovery


def _last_eval(workdir):
  """The last evaluation row of a workdir's metrics.jsonl."""
  return [row for row in metrics_log.read(workdir) if "eval/recon_cosine" in row][-1]


def summarize(paths, trained, recovery, seconds):
  """The summary dict of a finished job (also written as summary.json)."""
  final = _last_eval(paths["train"])
  levels = trained.config.model.quantizer.num_levels
  probe = probe_results.read(paths["probe"])
  discovery = display_discovery.read(paths["discovery"])
  cosine = final["eval/recon_cosine"]
  return {
      "heldout_recon_cosine": cosine,
      "heldout_recon_mse": final["eval/recon_mse"],
      "meets_cosine_target": cosine >= 0.9,
      "usage_by_level": [final.get(f"eval/vq/level{l}/usage") for l in range(levels)],
      "perplexity_by_level": [final.get(f"eval/vq/level{l}/perplexity") for l in range(levels)],
      "prefix_mse": [final.get(f"eval/recon/prefix{l + 1}_mse") for l in range(levels)],
      "token_recovery": recovery,
      "beats_kmeans_recovery": recovery["tokens"]["nmi"] > recovery["kmeans"]["nmi"],
      "discovery": discovery,
      "probe_metrics": probe.get("metrics", {}),
      "seconds": seconds,
      "total_seconds": sum(seconds.values()),
  }


def markdown(summary, paths):
  """The short summary the job prints: reconstruction, usage, recovery, probe table."""
  levels = len(summary["usage_by_level"])
  verdict = ("meets" if summary["meets_cosine_target"] else "FALLS SHORT of")
  lines = [
      "# dfe_jax main job: summary", "",
      f"Held-out (val split) reconstruction cosine similarity: "
      f"**{summary['heldout_recon_cosine']:.3f}** ({verdict} the 0.9 target); MSE "
      f"{summary['heldout_recon_mse']:.4f} on z-scored features.", "",
      "| level | usage | perplexity | recon MSE with levels 1..l |", "| ---: | ---: | ---: | ---: |",
  ]
  for l in range(levels):
    lines.append(f"| {l + 1} | {summary['usage_by_level'][l]:.3f} | "
                 f"{summary['perplexity_by_level'][l]:.1f} | {summary['prefix_mse'][l]:.4f} |")
  lines += ["", token_recovery.format_report(summary["token_recovery"]), "",
            "Tokens " + ("beat" if summary["beats_kmeans_recovery"] else "do NOT beat") +
            " the k-means baseline at recovering the ground-truth displays (NMI).", ""]
  lines += ["## Display discovery", "", display_discovery.markdown(summary["discovery"]), ""]
  lines += ["## Probes", "", probe_results.read_table(paths["probe"]), ""]
  lines += [f"Report: {os.path.join(paths['report'], 'report.html')}", "",
            "Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items())
            + f"; total {summary['total_seconds']:.0f} s"]
  return "\n".join(lines) + "\n"
