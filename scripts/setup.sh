#!/usr/bin/env bash
# Idempotent set-up: a project-local venv with torch==2.13.0 (it carries libtorch 2.13.0,
# which tch 0.26 links against), then a release build. A second run only checks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GANPAINT_ROOT"

TORCH_VERSION=2.13.0
STAMP="$VENV/.ganpaint-deps-$TORCH_VERSION"
if [ ! -f "$STAMP" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
  fi
  echo "== installing torch==$TORCH_VERSION (libtorch for the build; about 4.7 GB) into $VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q "torch==$TORCH_VERSION" numpy safetensors
  "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)"
  touch "$STAMP"
fi

echo "== building ganpaint (release)"
cargo build --release --quiet
