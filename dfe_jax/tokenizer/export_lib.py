"""Exports a trained workdir to one `model.npz` (+ `model.json`) for `dfe_jax.tokenizer.numpy_tokenizer`.

`model.npz` holds the encoder's and decoder's layer lists as JSON (`encoder_layers_json`,
`decoder_layers_json`: `models.architecture.to_json`), `params/<module path>/<name>` float32
weights (a conv layer's under `params/encoder/<layer name>/`), `codebooks` [C, K, E], the
normalisation (`norm_mode`, `norm_mean`, `norm_std`, and the training subjects' means as
`norm_subject_ids` / `norm_subject_mean`), `feature_names`, `fps`, `step`, `format_version` and
the resolved config as `config_json`. The JSON sidecar repeats everything but the arrays.
"""

import json
import os

import jax
import numpy as np

from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs
from dfe_jax.formats import provenance
from dfe_jax.models import architecture
from dfe_jax.tokenizer import numpy_tokenizer


def _flatten(tree, prefix):
  """{"a": {"b": x}} -> {"prefix/a/b": x} as float32 NumPy arrays."""
  flat = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    flat[f"{prefix}/{name}"] = np.asarray(jax.device_get(leaf), np.float32)
  return flat


def codebooks(trained):
  """The quantizer's codebooks [C, K, E] (EMA in `vq_stats`, else the `codebook` parameter)."""
  q = trained.config.model.quantizer
  if q.kind != "rvq":
    return None
  if q.learning == "ema":
    return np.asarray(jax.device_get(trained.variables["vq_stats"]["quantizer"]["codebook"]))
  return np.asarray(jax.device_get(trained.variables["params"]["quantizer"]["codebook"]))


def export_arrays(trained):
  """Every array of `model.npz` for a trained model."""
  if trained.config.model.name != "temporal_conv":
    raise ValueError(f"export supports temporal_conv models; {trained.config.model.name!r} "
                     "has no NumPy implementation yet")
  stats = trained.info["normalization"]
  subjects = sorted(stats.get("subject_mean", {}))
  num_features = trained.info["num_features"]
  arrays = {
      "format_version": np.int32(numpy_tokenizer.FORMAT_VERSION),
      "config_json": np.array(json.dumps(trained.config.to_dict())),
      "encoder_layers_json": np.array(json.dumps(
          architecture.to_json(trained.model.encoder.layers()))),
      "decoder_layers_json": np.array(json.dumps(
          architecture.to_json(trained.model.decoder.layers()))),
      "feature_names": np.array(trained.info["feature_names"]),
      "fps": np.float64(trained.info["fps"]),
      "step": np.int64(trained.step),
      "norm_mode": np.array(stats["mode"]),
      "norm_mean": np.asarray(stats["mean"], np.float32),
      "norm_std": np.asarray(stats["std"], np.float32),
      "norm_subject_ids": np.array(subjects, dtype=str),
      "norm_subject_mean": np.asarray([stats["subject_mean"][s] for s in subjects],
                                      np.float32).reshape(len(subjects), num_features),
  }
  arrays.update(_flatten(trained.variables["params"], "params"))
  books = codebooks(trained)
  if books is not None:
    arrays["codebooks"] = books.astype(np.float32)
  return arrays


def export(trained, output, overwrite=False):
  """Writes `output` (model.npz) and its JSON sidecar atomically; returns the sidecar dict."""
  sidecar_path = os.path.splitext(output)[0] + ".json"
  for path in (output, sidecar_path):
    if filesystem.exists(path) and not overwrite:
      raise outputs.OutputExistsError(f"{path}: already exists; pass --overwrite to replace it")
  arrays = export_arrays(trained)
  sidecar = {
      "format_version": numpy_tokenizer.FORMAT_VERSION,
      "step": trained.step,
      "config": trained.config.to_dict(),
      "feature_names": trained.info["feature_names"],
      "fps": trained.info["fps"],
      "normalization_mode": trained.info["normalization"]["mode"],
      "arrays": {k: list(v.shape) for k, v in arrays.items()},
      **provenance.training_run(),
  }
  parent = os.path.dirname(output)
  if parent:
    filesystem.makedirs(parent)
  outputs.save_npz(output, **arrays)
  with outputs.atomic_open(sidecar_path) as f:
    json.dump(sidecar, f, indent=1)
  return sidecar
