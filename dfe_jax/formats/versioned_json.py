"""Reading a JSON file that records its `format_version`: the door every such format shares.

Each format module describes its file once (`JsonFormat`) and reads it with `read`, which
stops with one line naming the file on a missing, unreadable or foreign file, or one of a
version this dfe_jax does not read.
"""

import dataclasses
import json
import os

from dfe_jax.formats import filesystem


@dataclasses.dataclass(frozen=True)
class JsonFormat:
  file_name: str              # e.g. "results.json": what a folder holds.
  kind: str                   # e.g. "probe results": what the messages call its content.
  versions: tuple             # The format versions this dfe_jax reads.
  remedy: str                 # What to do about an unknown version.
  produced_by: str            # The command that writes it, for a missing file.
  error: type                 # Raised for a bad file (a ValueError).
  not_found_error: type       # Raised for a missing file (also a FileNotFoundError).
  unversioned: int | None = None  # The version of a file without one; None: it is an error.
  required_keys: tuple = ()


def read(path, spec):
  """The JSON object at `path` (or in the folder `path`), checked against `spec`."""
  if filesystem.isdir(path):
    path = os.path.join(path, spec.file_name)
  if not filesystem.exists(path):
    raise spec.not_found_error(f"{path}: no {spec.kind}; run `{spec.produced_by}` first")
  try:
    with filesystem.open(path) as f:
      content = json.load(f)
  except (OSError, ValueError) as e:
    raise spec.error(f"{path}: not a readable {spec.file_name} ({e})") from None
  if not isinstance(content, dict):
    raise spec.error(f"{path}: not {spec.kind} (a JSON object is expected)")
  version = content.get("format_version", spec.unversioned)
  if version not in spec.versions:
    raise spec.error(f"{path}: {spec.kind} format_version {version!r}; this dfe_jax reads "
                     f"{', '.join(map(str, spec.versions))} ({spec.remedy})")
  missing = [k for k in spec.required_keys if k not in content]
  if missing:
    raise spec.error(f"{path}: not {spec.kind} (no {', '.join(map(repr, missing))})")
  return content
