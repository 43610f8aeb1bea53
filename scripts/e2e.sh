#!/usr/bin/env bash
# Tests of the bundled UI: first the unit tests of its pure modules (tests/e2e/unit, plain
# `node --test`, no server), then the browser tests (tests/e2e/*.test.mjs): Debian's
# chromium driven by playwright-core, against a real `ganpaint serve` on a free port. A
# second server with no strokes-per-request limit answers reference renders (a long
# edit in one request) for the tests that compare against them. Both keep the pictures
# the tests upload in a temporary folder, removed at the end, never in the repository.
# Idempotent: installs chromium and the npm packages only when missing or stale. Builds
# nothing: run scripts/setup.sh first.
#
#   GANPAINT_E2E_DATA   data folder to serve (default: dissect, holding the demo project)
#   GANPAINT_E2E_DEVICE device for the server (default: cpu)
# Extra arguments go to `node --test` (e.g. --test-name-pattern=touch).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BINARY="$ROOT/target/release/ganpaint"
DATA="${GANPAINT_E2E_DATA:-dissect}"
DEVICE="${GANPAINT_E2E_DEVICE:-cpu}"
E2E="$ROOT/tests/e2e"

echo "== e2e: unit tests of the editor's modules (node --test tests/e2e/unit/)"
node --test tests/e2e/unit/

if [ ! -x "$BINARY" ]; then
  echo "e2e: $BINARY is missing; run scripts/setup.sh first" >&2
  exit 1
fi

# Chromium, from Debian.
if [ ! -x /usr/bin/chromium ]; then
  echo "== e2e: installing chromium"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! $SUDO apt-get install -y -q chromium >/dev/null 2>&1; then
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q chromium
  fi
fi

# playwright-core, pinned by package-lock.json; reinstalled when the lock changes.
STAMP="$E2E/node_modules/.ganpaint-lock"
if [ ! -f "$STAMP" ] || ! cmp -s "$E2E/package-lock.json" "$STAMP"; then
  echo "== e2e: npm ci"
  (cd "$E2E" && npm ci --no-audit --no-fund --prefer-offline)
  cp "$E2E/package-lock.json" "$STAMP"
fi

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

SERVER_PIDS=()
LOGS=()
UPLOADS="$(mktemp -d -t ganpaint-e2e-uploads.XXXXXX)"
cleanup() {
  local status=$?
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$UPLOADS"
  for log in "${LOGS[@]}"; do
    if [ "$status" -eq 0 ]; then rm -f "$log"; else echo "e2e: server log kept at $log" >&2; fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME EXTRA_ARGS…: serves $DATA on a free port, keeping uploads in
# $UPLOADS/NAME; prints nothing, sets URL_<NAME>.
start_server() {
  local name="$1"
  shift
  local port log
  port="$(free_port)"
  log="$(mktemp -t "ganpaint-e2e-$name.XXXXXX.log")"
  mkdir -p "$UPLOADS/$name"
  echo "== e2e: serving $DATA on port $port ($name; log: $log)"
  "$BINARY" serve --address 127.0.0.1 --port "$port" --data "$DATA" --device "$DEVICE" --client "$ROOT/static" \
    --uploads "$UPLOADS/$name" "$@" >"$log" 2>&1 &
  SERVER_PIDS+=("$!")
  LOGS+=("$log")
  printf -v "URL_$name" '%s' "http://127.0.0.1:$port"
}

# wait_ready URL LOG PID
wait_ready() {
  local url="$1" log="$2" pid="$3"
  for _ in $(seq 1 600); do
    if curl -fsS "$url/healthz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "e2e: the server at $url exited before it was ready:" >&2
      grep -v "^[[:space:]]" "$log" | tail -n 15 >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "e2e: the server at $url did not answer /healthz within 60 s:" >&2
  tail -n 30 "$log" >&2
  exit 1
}

start_server main
# The reference: the same model, any number of strokes in one request.
start_server reference --max-strokes 100000 --render-cache-mb 0
wait_ready "$URL_main" "${LOGS[0]}" "${SERVER_PIDS[0]}"
wait_ready "$URL_reference" "${LOGS[1]}" "${SERVER_PIDS[1]}"

echo "== e2e: node --test tests/e2e/*.test.mjs"
GANPAINT_E2E_URL="$URL_main" GANPAINT_E2E_REFERENCE_URL="$URL_reference" node --test "$@" "$E2E"/*.test.mjs
