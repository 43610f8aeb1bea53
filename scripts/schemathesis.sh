#!/usr/bin/env bash
# Property-based API check: serves the bundled demo project on a free 127.0.0.1 port and
# runs schemathesis (pinned, installed into the project venv) against /api/openapi.json.
# Fails on any server error, or any answer whose status, content type, headers or body the
# document does not declare. Bounded: at most SCHEMATHESIS_MAX_EXAMPLES cases per operation
# and SCHEMATHESIS_MAX_TIME seconds (hard limit: that plus 30 s). Deterministic enough for CI:
# derandomized generation (schemathesis's deterministic mode, no example database).
# Usage: scripts/schemathesis.sh [extra schemathesis run arguments]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GANPAINT_ROOT"

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-40}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-120}"
BINARY="$GANPAINT_ROOT/target/release/ganpaint"

STAMP="$VENV/.ganpaint-schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -f "$STAMP" ]; then
  echo "== schemathesis: installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$STAMP"
fi
[ -x "$BINARY" ] || { echo "schemathesis: $BINARY is missing (run scripts/setup.sh)" >&2; exit 1; }

port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
log="$(mktemp -t ganpaint-schemathesis.XXXXXX.log)"
report="$(mktemp -d -t ganpaint-schemathesis-report.XXXXXX)"
uploads="$(mktemp -d -t ganpaint-schemathesis-uploads.XXXXXX)"
"$BINARY" serve --address 127.0.0.1 --port "$port" --data "$GANPAINT_ROOT/dissect" --device cpu \
  --uploads "$uploads" >"$log" 2>&1 &
server=$!
cleanup() {
  local status=$?
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$uploads"
  if [ "$status" -eq 0 ]; then rm -rf "$log" "$report"; else echo "schemathesis: server log kept at $log" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 600); do
  if curl -fsS "$url/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "schemathesis: the server exited before it was ready:" >&2
    tail -n 15 "$log" >&2
    exit 1
  fi
  sleep 0.1
done
curl -fsS "$url/healthz" >/dev/null || { echo "schemathesis: no /healthz within 60 s" >&2; exit 1; }

echo "== schemathesis $SCHEMATHESIS_VERSION against $url/api/openapi.json ($MAX_EXAMPLES examples per operation, at most $MAX_TIME s)"
started=$SECONDS
# From a scratch folder: schemathesis keeps its cache (.schemathesis/) in the current one.
cd "$report"
timeout --kill-after=10 "$((MAX_TIME + 30))" "$VENV/bin/schemathesis" run "$url/api/openapi.json" \
  --url "$url" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$MAX_EXAMPLES" \
  --max-time "$MAX_TIME" \
  --generation-deterministic \
  --request-timeout 30 \
  --workers 1 \
  --no-color \
  "$@"
echo "== schemathesis: passed in $((SECONDS - started)) s"
