# Sourced by the other scripts (and by developers: `source scripts/env.sh`) so that cargo
# builds against the libtorch inside the project's venv. Nothing here is needed to *run*
# the built binary: its rpath points at libtorch.
GANPAINT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GANPAINT_ROOT
export VENV="$GANPAINT_ROOT/.venv"
export LIBTORCH_USE_PYTORCH=1
export PATH="$VENV/bin:$PATH"
# libtorch's own thread pool; 0 lets it pick one per core.
export CARGO_TERM_PROGRESS_WHEN=never
