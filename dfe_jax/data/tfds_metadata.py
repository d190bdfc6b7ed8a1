"""TFDS's metadata beside the shards, so `tfds.builder_from_directory(dir)` reads a dataset.

TFDS reads third-party `tf.train.Example` files given two JSON files: `features.json` (how to
decode each key) and `dataset_info.json` (splits, shard lengths, the file-name template). Our
shard names already follow the template `{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}`, so nothing is
renamed or copied. Written as JSON here (the layout `tfds.folder_dataset.write_metadata`
writes), so ingest never imports TFDS; tests/test_ingest.py loads the result with TFDS.

TFDS gives each record as stored: `features` float32 [T, D] and `valid` bool [T] not
normalised (`dataset.json` has the statistics), with its ids, `start_frame`, `num_frames`, `fps`.
"""

import json
import os

from dfe_jax.formats import filesystem

DATASET_INFO = "dataset_info.json"
FEATURES = "features.json"
FILE_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}"
_TENSOR = "tensorflow_datasets.core.features.tensor_feature.Tensor"
_TEXT = "tensorflow_datasets.core.features.text_feature.Text"


def _tensor(dtype, dimensions=None, encoding="none"):
  shape = {"dimensions": [str(d) for d in dimensions]} if dimensions else {}
  return {"pythonClassName": _TENSOR,
          "tensor": {"dtype": dtype, "encoding": encoding, "shape": shape}}


def features_json(num_features):
  """`features.json`: a FeaturesDict matching the shard record (docs/formats.md)."""
  text = {"pythonClassName": _TEXT, "text": {}}
  return {
      "pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
      "featuresDict": {"features": {
          "video_id": text,
          "subject_id": text,
          "start_frame": _tensor("int64"),
          "num_frames": _tensor("int64"),
          "fps": _tensor("float32"),
          "features": _tensor("float32", (-1, num_features), "bytes"),
          "valid": _tensor("bool", (-1,), "bytes"),
      }},
  }


def dataset_info_json(info, name):
  """`dataset_info.json` from our dataset.json: one TFDS split per split, same shards."""
  splits = []
  for split, entry in info["splits"].items():
    splits.append({"name": split, "filepathTemplate": FILE_TEMPLATE,
                   "shardLengths": [str(s["num_records"]) for s in entry["shards"]]})
  return {
      "name": name,
      "description": (f"Discrete Facial Encoding corpus ({info['feature_space']}, "
                      f"{info['num_features']} features at {info['fps']:g} fps), written by "
                      "dfe_jax ingest; dataset.json beside it has the normalisation."),
      "fileFormat": "tfrecord",
      "version": f"{info['format_version']}.0.0",
      "splits": splits,
  }


def write(output_dir, info, name="dfe_corpus"):
  """Writes both files into `output_dir`, beside the shards named in `info` (dataset.json)."""
  for filename, content in ((FEATURES, features_json(info["num_features"])),
                            (DATASET_INFO, dataset_info_json(info, name))):
    with filesystem.open(os.path.join(output_dir, filename), "w") as f:
      json.dump(content, f, indent=1)
