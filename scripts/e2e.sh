#!/usr/bin/env bash
# Browser tests of the bundled UI (tests/e2e): Debian's chromium driven by playwright-core,
# against a real `ganpaint serve` on a free port. Idempotent: installs chromium and the
# npm packages only when missing or stale. Builds nothing: run scripts/setup.sh first.
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

# A free port, chosen by the kernel.
PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
LOG="$(mktemp -t ganpaint-e2e-server.XXXXXX.log)"
echo "== e2e: serving $DATA on port $PORT (log: $LOG)"
"$BINARY" serve --address 127.0.0.1 --port "$PORT" --data "$DATA" --device "$DEVICE" --client "$ROOT/static" >"$LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
  local status=$?
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  if [ "$status" -eq 0 ]; then rm -f "$LOG"; else echo "e2e: server log kept at $LOG" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 600); do
  if curl -fsS "$URL/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "e2e: the server exited before it was ready:" >&2
    grep -v "^[[:space:]]" "$LOG" | tail -n 15 >&2
    exit 1
  fi
  sleep 0.1
done
if ! curl -fsS "$URL/healthz" >/dev/null 2>&1; then
  echo "e2e: the server did not answer /healthz within 60 s:" >&2
  tail -n 30 "$LOG" >&2
  exit 1
fi

echo "== e2e: node --test tests/e2e/"
GANPAINT_E2E_URL="$URL" node --test "$@" tests/e2e/
