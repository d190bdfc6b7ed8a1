"""Data preparation through the Beam pipelines against the process pools they replaced, in one run.

  python -m benchmarks.data_prep [--corpus=MANIFEST] [--media=DIR] [--rounds=3]

Ingest: the main job's corpus (48 subjects x 3 videos x 60 s at 25 fps = 216,000 frames,
written to a temporary folder unless `--corpus` names a manifest), `--normalize=subject` as the
main job runs it. Extract: the five test clips (`bash .ci/fetch_test_media.sh`) at full length;
skipped without them. "Process pool" is the code of revision BASELINE_REVISION (the last one
before the pipelines), loaded from git: ingest with its default 2 spawned processes, extract
with 1 (its default) and 2. The pipeline runs on Beam's DirectRunner with 1 worker (in this
process), 2 threads (the default on 2 cores) and 2 processes. Each
configuration runs `--rounds` times, alternating; the median wall time of a call (imports done
once per process, worker start-up included) gives frames/s. Prints a table and one JSON line.
"""

import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

from dfe_jax.data import ingest_lib
from dfe_jax.synthetic import synth_lib

BASELINE_REVISION = "15928441c65c277f2df00ca99c8958ddaa2f01ef"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov", "no_face.mp4",
         "carphone_pristine.mp4")

_CORPUS = flags.DEFINE_string("corpus", None, "Manifest to ingest (default: the main job's).")
_MEDIA = flags.DEFINE_string(
    "media", os.path.expanduser("~/.cache/dfe_jax/test_media"), "Folder of the test clips and "
    "face_landmarker.task.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed calls of each configuration.")
_SKIP_EXTRACT = flags.DEFINE_bool("skip_extract", False, "Time ingest only.")
_EXTRACT_COPIES = flags.DEFINE_integer(
    "extract_copies", 1, "List each test clip this many times (as different videos): more, "
    "longer work, where the pipeline's fixed start-up counts for less.", lower_bound=1)


def _baseline_module(path, name, folder):
  """The module at `path` in BASELINE_REVISION, importable as `name` (also in spawned workers)."""
  source = subprocess.run(["git", "show", f"{BASELINE_REVISION}:{path}"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout
  with open(os.path.join(folder, f"{name}.py"), "w") as f:
    f.write(source)
  if folder not in sys.path:
    sys.path.insert(0, folder)
  return importlib.import_module(name)


def _direct(workers, mode):
  return ("--runner=DirectRunner", f"--direct_num_workers={workers}",
          f"--direct_running_mode={mode}")


def _time(configs, rounds, scratch):
  """({name: [seconds]}, {name: frames}) of `rounds` alternating calls of each fn(output_dir)."""
  seconds, frames = {name: [] for name in configs}, {}
  for r in range(rounds):
    for name, fn in configs.items():
      out = os.path.join(scratch, f"{name.replace(' ', '_').replace(',', '')}-{r}")
      start = time.perf_counter()
      frames[name] = fn(out)
      seconds[name].append(time.perf_counter() - start)
  return seconds, frames


def _ingest_configs(manifest, old_ingest):
  """Today's process pool and the pipeline at 1 and 2 workers; each returns frames ingested."""
  def old(out):
    info = old_ingest.ingest(manifest, out, old_ingest.IngestOptions(normalize="subject"))
    return sum(s["num_frames"] for s in info["splits"].values())

  def pipeline(args):
    def run(out):
      info = ingest_lib.ingest(manifest, out, ingest_lib.IngestOptions(
          normalize="subject", beam_options=args))
      return sum(s["num_frames"] for s in info["splits"].values())
    return run

  return {"process pool (2 processes)": old,
          "pipeline, 1 worker": pipeline(_direct(1, "in_memory")),
          "pipeline, 2 threads": pipeline(_direct(2, "multi_threading")),
          "pipeline, 2 processes": pipeline(_direct(2, "multi_processing"))}


def _extract_configs(media, old_extract, copies, scratch):
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  from dfe_jax.video import extract_lib  # pylint: disable=g-import-not-at-top
  spec = os.path.join(scratch, "clips.csv")
  with open(spec, "w") as f:
    f.write("video_id,video_path\n")
    for k in range(copies):
      for clip in CLIPS:
        f.write(f"{os.path.splitext(clip)[0]}_{k},{os.path.join(media, clip)}\n")
  model = os.path.join(media, "face_landmarker.task")

  def old(processes):
    def run(out):
      outcomes = old_extract.extract_all(old_extract.read_entries(spec), out, model,
                                         old_extract.Options(), processes)
      return sum(o.frames for o in outcomes)
    return run

  def pipeline(args):
    def run(out):
      outcomes = extract_lib.extract_all(
          extract_lib.read_entries(spec), out, model, extract_lib.Options(),
          pipeline_options=pipeline_options.PipelineOptions(list(args)))
      return sum(o.frames for o in outcomes)
    return run

  return {"process pool, 1 process": old(1),
          "process pool, 2 processes": old(2),
          "pipeline, 1 worker": pipeline(_direct(1, "in_memory")),
          "pipeline, 2 threads": pipeline(_direct(2, "multi_threading")),
          "pipeline, 2 processes": pipeline(_direct(2, "multi_processing"))}


def _report(title, timed, baseline):
  seconds, frames = timed
  rows = {}
  print(f"\n{title}")
  base = statistics.median(seconds[baseline])
  for name, times in seconds.items():
    median = statistics.median(times)
    rows[name] = {"seconds": median, "frames": frames[name],
                  "frames_per_second": frames[name] / median, "speed_vs_pool": base / median}
    print(f"  {name:28s} {median:7.2f} s  {frames[name] / median:10,.0f} frames/s  "
          f"{base / median:5.2f}x the process pool")
  return rows


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  std_logging.getLogger("apache_beam").setLevel(std_logging.ERROR)
  scratch = tempfile.mkdtemp(prefix="dfe_data_prep_")
  result = {"cpu_count": os.cpu_count(), "baseline_revision": BASELINE_REVISION}
  manifest = _CORPUS.value or synth_lib.write_corpus(
      synth_lib.CorpusSpec(num_subjects=48, video_seconds=60.0),
      os.path.join(scratch, "corpus"), num_workers=2)
  old_ingest = _baseline_module("dfe_jax/data/ingest_lib.py", "dfe_baseline_ingest_lib", scratch)
  result["ingest"] = _report(
      f"ingest ({manifest}, --normalize=subject), median of {_ROUNDS.value}",
      _time(_ingest_configs(manifest, old_ingest), _ROUNDS.value, scratch),
      "process pool (2 processes)")
  media = _MEDIA.value
  if not _SKIP_EXTRACT.value and all(os.path.isfile(os.path.join(media, c))
                                     for c in CLIPS + ("face_landmarker.task",)):
    old_extract = _baseline_module("dfe_jax/video/extract_lib.py", "dfe_baseline_extract_lib",
                                   scratch)
    copies = _EXTRACT_COPIES.value
    result["extract"] = _report(
        f"extract (the {len(CLIPS)} test clips, full length, x{copies}), median of "
        f"{_ROUNDS.value}",
        _time(_extract_configs(media, old_extract, copies, scratch), _ROUNDS.value, scratch),
        "process pool, 2 processes")
    result["extract_copies"] = copies
  else:
    print("\nextract: skipped (no test clips; run `bash .ci/fetch_test_media.sh`)")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
