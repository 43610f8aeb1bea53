#!/usr/bin/env bash
# Command A: set up (idempotent), then run the main job with the bundled model.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$GANPAINT_ROOT/scripts/setup.sh"
cd "$GANPAINT_ROOT"
exec ./target/release/ganpaint generate --ids 0..16 --out out/samples "$@"
