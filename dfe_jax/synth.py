"""Writes the built-in synthetic corpus: per-video `.npz`, `manifest.csv`, `displays.npz`.

  python -m dfe_jax.synth --output_dir=data/synth [--space=arkit51] [--num_subjects=48]

The generative model is documented in `dfe_jax/synth_lib.py`.
"""

import csv
import dataclasses
import io
import json
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from dfe_jax import outputs
from dfe_jax import parallel
from dfe_jax import synth_lib

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the corpus.", required=True)
_SPACE = flags.DEFINE_enum("space", "flame53", ["flame53", "arkit51"], "Feature space.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 48, "Number of subjects.")
_VIDEOS_PER_SUBJECT = flags.DEFINE_integer("videos_per_subject", 3, "Videos per subject.")
_VIDEO_SECONDS = flags.DEFINE_float("video_seconds", 60.0, "Length of each video in seconds.")
_FPS = flags.DEFINE_float("fps", 25.0, "Frame rate.")
_NUM_DISPLAYS = flags.DEFINE_integer("num_displays", 16, "Ground-truth facial displays.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed; the corpus is a pure function of the flags.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 1, "Processes generating videos.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing corpus.")


def _write_video(job):
  """Generates and writes one video (runs in a worker process)."""
  spec, dictionary, offset, scale, z_video, seed_seq, path = job
  video = synth_lib.make_video(spec, dictionary, offset, scale, z_video, seed_seq)
  outputs.save_npz(path, **video)
  return len(video["valid"])


def write_corpus(spec, output_dir, overwrite=False, num_workers=1):
  """Generates the corpus described by `spec` into `output_dir`; returns the manifest path."""
  if spec.num_subjects < 1 or spec.videos_per_subject < 1 or spec.video_seconds <= 0:
    raise ValueError("num_subjects, videos_per_subject and video_seconds must be positive")
  outputs.check_writable_dir(output_dir, overwrite)
  outputs.check_writable_dir(outputs.join(output_dir, "videos"), True)
  dictionary = synth_lib.make_dictionary(spec)
  z_subject, z_stress = synth_lib.draw_subject_traits(spec)
  offsets, scales = synth_lib.draw_subjects(spec)
  rows, jobs = [], []
  for video_id, subject_id, s, v, seed_seq in synth_lib.video_jobs(spec):
    z_video = np.array([z_stress[s, v], z_subject[s, 1], z_subject[s, 2]])
    rel_path = f"videos/{video_id}.npz"
    rows.append({"video_id": video_id, "subject_id": subject_id, "path": rel_path,
                 **synth_lib.labels_of(z_subject[s], z_stress[s, v])})
    jobs.append((spec, dictionary, offsets[s], scales[s], z_video, seed_seq,
                 outputs.join(output_dir, rel_path)))
  start, frames = time.time(), 0
  with parallel.process_pool(num_workers) as pool:
    for i, n in enumerate(pool.map(_write_video, jobs), 1):
      frames += n
      if i % 50 == 0 or i == len(jobs):
        logging.info("synth: %d/%d videos, %d frames, %.0f frames/s", i, len(jobs), frames,
                     frames / max(time.time() - start, 1e-9))
  outputs.save_npz(
      outputs.join(output_dir, "displays.npz"), loadings=dictionary.loadings_GD,
      feature_names=np.array(dictionary.feature_names), kind=np.array(dictionary.kind),
      partner=dictionary.partner, base_rate_per_min=dictionary.base_rate_per_min,
      trait_effects=dictionary.trait_effects_GK, trait_names=np.array(synth_lib.TRAITS),
      au_map=dictionary.au_map_GA, au_names=np.array(synth_lib.AU_NAMES))
  with outputs.atomic_open(outputs.join(output_dir, "corpus.json")) as f:
    json.dump(dataclasses.asdict(spec), f, indent=2)
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
  writer.writeheader()
  writer.writerows(rows)
  manifest = outputs.join(output_dir, "manifest.csv")
  with outputs.atomic_open(manifest) as f:
    f.write(buffer.getvalue())
  logging.info("synth: wrote %d videos (%d frames) to %s", len(rows), frames, output_dir)
  return manifest


def main(argv):
  del argv
  spec = synth_lib.CorpusSpec(
      space=_SPACE.value, num_subjects=_NUM_SUBJECTS.value,
      videos_per_subject=_VIDEOS_PER_SUBJECT.value, video_seconds=_VIDEO_SECONDS.value,
      fps=_FPS.value, num_displays=_NUM_DISPLAYS.value, seed=_SEED.value)
  try:
    write_corpus(spec, _OUTPUT_DIR.value, _OVERWRITE.value, _NUM_WORKERS.value)
  except (outputs.OutputExistsError, ValueError) as e:
    sys.exit(f"synth: error: {e}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
