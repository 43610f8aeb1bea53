#!/usr/bin/env bash
# Command B: set up (idempotent), then check formatting and lints (rustfmt, clippy with
# warnings as errors) and run every test: Rust unit and end-to-end tests, a
# bounded schemathesis run against the OpenAPI document (scripts/schemathesis.sh), then the
# browser tests of the bundled UI against the bundled demo project.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$GANPAINT_ROOT/scripts/setup.sh"
cd "$GANPAINT_ROOT"
echo "== rustfmt and clippy (warnings are errors)"
for tool in fmt clippy; do
  cargo "$tool" --version >/dev/null 2>&1 || {
    echo "cargo $tool is missing: rustup component add $([ "$tool" = fmt ] && echo rustfmt || echo clippy)" >&2
    exit 1
  }
done
cargo fmt --check
cargo clippy --release --all-targets --quiet -- -D warnings
echo "== cargo test (release profile, shared with the server build)"
cargo test --release
echo "== Kubernetes manifests (offline schema check, kubernetes-validate from PyPI in the venv)"
"$VENV/bin/python" -m pip show kubernetes-validate >/dev/null 2>&1 \
  || "$VENV/bin/python" -m pip install -q kubernetes-validate
"$VENV/bin/kubernetes-validate" -k 1.30.0 --strict "$GANPAINT_ROOT"/deploy/kubernetes/*.yaml
echo "== schemathesis against /api/openapi.json (bounded: at most about 3 minutes)"
"$GANPAINT_ROOT/scripts/schemathesis.sh"
echo "== browser tests"
"$GANPAINT_ROOT/scripts/e2e.sh"
