"""Train step speed of one `config.model.conv_impl` against another, alternating in one process.

  python -m benchmarks.conv_impl_ab [--baseline=xla_cpu] [--candidate=auto] [--rounds=7]
                                    [--round_steps=5] [--quick]

Builds `benchmarks.jitted_step`'s step of the reference config (`benchmarks.train_step`'s) twice,
once per implementation, each with its own state and the same batches. Each round times
`--round_steps` steps of both, one after the other (which goes first alternates by round, so a
drift in the machine's speed favours neither), each from its first dispatch until its last state
is ready. The machine's speed drifts within minutes, so only a round's ratio is meaningful: the
headline is the median over rounds of candidate speed / baseline speed (above 1: the candidate is
faster). Each round also records the cores other processes kept busy. `--quick` runs
`configs/rvq.py:smoke`'s model for two rounds of one step, a check that the benchmark works.
Prints a line per round, the median, and one JSON line last.
"""

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import jax

from benchmarks import contention
from benchmarks import jitted_step
from benchmarks import reference

from dfe_jax import models

_BASELINE = flags.DEFINE_enum("baseline", "xla_cpu", models.CONV_IMPLS,
                              "conv_impl of the baseline step.")
_CANDIDATE = flags.DEFINE_enum("candidate", "auto", models.CONV_IMPLS,
                               "conv_impl of the candidate step.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Rounds, each timing both steps.", lower_bound=1)
_ROUND_STEPS = flags.DEFINE_integer("round_steps", 5, "Timed steps of each side per round.",
                                    lower_bound=1)
_QUICK = flags.DEFINE_bool("quick", False, "configs/rvq.py:smoke, 2 rounds of 1 step.")


def quick_config():
  """What --quick times: configs/rvq.py:smoke's model on 8 windows of 16 frames."""
  sys.path.insert(0, os.path.join(reference.REPO, "configs"))
  import rvq  # pylint: disable=g-import-not-at-top
  config = rvq.get_config("smoke")
  config.global_batch_size, config.window_frames = 8, 16
  return config


def compare(config, baseline, candidate, rounds, round_steps, warmup_steps=2):
  """Times the two steps of `config` alternately; returns the result dict (see the module doc)."""
  config = config.copy_and_resolve_references()
  sides = {}
  for name, conv_impl in (("baseline", baseline), ("candidate", candidate)):
    config.model.conv_impl = conv_impl
    step = jitted_step.build(config)
    start = time.perf_counter()
    first_loss = float(step.run(1)["train/loss/total"])
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(step.run(warmup_steps))
    sides[name] = dict(step=step, conv_impl=models.resolve_conv_impl(conv_impl),
                       first_loss=first_loss, compile_seconds=compile_seconds, seconds=[])
  load_start = os.getloadavg()
  ratios, busy = [], []
  for index in range(rounds):
    order = ("baseline", "candidate") if index % 2 == 0 else ("candidate", "baseline")
    before = contention.cpu_snapshot()
    for name in order:
      side = sides[name]
      start = time.perf_counter()
      side["step"].run(round_steps)
      jax.block_until_ready(side["step"].state)
      side["seconds"].append((time.perf_counter() - start) / round_steps)
    busy.append(contention.other_cores(before, contention.cpu_snapshot()))
    ratios.append(sides["baseline"]["seconds"][-1] / sides["candidate"]["seconds"][-1])
    print(f"round {index} ({order[0]} first): baseline {sides['baseline']['seconds'][-1]:.3f} "
          f"s/step, candidate {sides['candidate']['seconds'][-1]:.3f} s/step, candidate speed / "
          f"baseline {ratios[-1]:.3f}; others {busy[-1]:.2f} cores, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
  result = {
      "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      "jax": jax.__version__, "backend": jax.default_backend(), "devices": jax.device_count(),
      "batch": config.global_batch_size, "frames": config.window_frames,
      "width": config.model.width, "round_steps": round_steps,
      "speed_ratio_all": ratios, "speed_ratio_median": statistics.median(ratios),
      "other_cores_all": busy, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
  }
  for name, side in sides.items():
    result[name] = {"conv_impl": side["conv_impl"], "first_loss": side["first_loss"],
                    "compile_and_first_step_s": side["compile_seconds"],
                    "seconds_per_step_median": statistics.median(side["seconds"]),
                    "seconds_per_step_all": side["seconds"]}
  return result


def main(argv):
  del argv
  if _QUICK.value:
    config, rounds, round_steps = quick_config(), 2, 1
  else:
    config, rounds, round_steps = reference.config(), _ROUNDS.value, _ROUND_STEPS.value
  result = compare(config, _BASELINE.value, _CANDIDATE.value, rounds, round_steps)
  print(f"{_CANDIDATE.value} ({result['candidate']['conv_impl']}) vs {_BASELINE.value} "
        f"({result['baseline']['conv_impl']}): candidate speed / baseline per round "
        + ", ".join(f"{r:.3f}" for r in result["speed_ratio_all"])
        + f" | median {result['speed_ratio_median']:.3f}", flush=True)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
