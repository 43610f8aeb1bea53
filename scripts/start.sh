#!/usr/bin/env bash
# Command A: set up (idempotent), then serve the editor with the bundled demo project on
# port 5001. Extra arguments go to `ganpaint serve`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$GANPAINT_ROOT/scripts/setup.sh"
cd "$GANPAINT_ROOT"
exec ./target/release/ganpaint serve "$@"
