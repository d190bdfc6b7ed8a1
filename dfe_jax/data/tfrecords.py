"""The shard records without TensorFlow: `tf.train.Example` bytes and TFRecord framing.

Pipeline workers write shards with these, so they never load TensorFlow (seconds and hundreds
of MB per worker). The bytes are a valid `tf.train.Example` (TensorFlow and TFDS parse them);
map entries are written in sorted key order, so one record always has one encoding.

TFRecord framing: uint64 length, masked crc32c of the length, the data, masked crc32c of the
data (little-endian), as `tf.io.TFRecordWriter` writes it.
"""

import hashlib
import struct

import google_crc32c
import numpy as np

from dfe_jax.formats import filesystem


def _varint(n):
  n &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negative numbers.
  out = bytearray()
  while n > 0x7F:
    out.append((n & 0x7F) | 0x80)
    n >>= 7
  out.append(n)
  return bytes(out)


def _field(number, payload):
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def bytes_feature(values):
  """`Feature{bytes_list}` of byte strings."""
  return _field(1, b"".join(_field(1, v) for v in values))


def float_feature(values):
  """`Feature{float_list}` (packed float32)."""
  return _field(2, _field(1, np.asarray(values, "<f4").tobytes()))


def int64_feature(values):
  """`Feature{int64_list}` (packed varints)."""
  return _field(3, _field(1, b"".join(_varint(int(v)) for v in values)))


def example(features):
  """Serialized `tf.train.Example` from {name: encoded Feature}, keys in sorted order."""
  entries = b"".join(_field(1, _field(1, name.encode()) + _field(2, features[name]))
                     for name in sorted(features))
  return _field(1, entries)


def shard_example(video_id, subject_id, start, x_TD, valid_T, fps):
  """One shard record (docs/formats.md, "Shards"): features as raw little-endian float32
  [T, D] bytes and valid as uint8 [T] bytes, so a record parses with one copy."""
  return example({
      "video_id": bytes_feature([video_id.encode()]),
      "subject_id": bytes_feature([subject_id.encode()]),
      "start_frame": int64_feature([start]),
      "num_frames": int64_feature([len(x_TD)]),
      "fps": float_feature([fps]),
      "features": bytes_feature([np.ascontiguousarray(x_TD, "<f4").tobytes()]),
      "valid": bytes_feature([np.asarray(valid_T).astype(np.uint8).tobytes()]),
  })


def _masked_crc(data):
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record):
  """One TFRecord: the record's bytes with its length and checksums."""
  length = struct.pack("<Q", len(record))
  return (length + struct.pack("<I", _masked_crc(length)) + record
          + struct.pack("<I", _masked_crc(record)))


def write_file(path, records):
  """Writes `records` (bytes, in order) as one TFRecord file; returns its hex sha256."""
  digest = hashlib.sha256()
  with filesystem.open(path, "wb") as f:
    for record in records:
      framed = frame(record)
      digest.update(framed)
      f.write(framed)
  return digest.hexdigest()
