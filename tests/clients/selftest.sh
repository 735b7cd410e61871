#!/usr/bin/env bash
# Self-test of the client harness (no bridge involved): start server-everything
# on loopback in sse and streamableHttp modes, run both clients against each,
# plus 16 concurrent tagged TS clients per transport. Needs scripts/test-deps.
#
#   tests/clients/selftest.sh            # ports 3901 (sse) and 3902 (streamableHttp)
#   SSE_PORT=4901 SHTTP_PORT=4902 tests/clients/selftest.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SSE_PORT="${SSE_PORT:-3901}"
SHTTP_PORT="${SHTTP_PORT:-3902}"
PY="$HERE/.venv/bin/python"
LOGDIR="$(mktemp -d)"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

start_server() { # mode port
  PORT="$2" timeout 600 node "$HERE/everything_server.mjs" "$1" >"$LOGDIR/everything-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server-everything $1 did not listen on $2" >&2
  cat "$LOGDIR/everything-$1.log" >&2
  return 1
}

start_server sse "$SSE_PORT"
start_server streamableHttp "$SHTTP_PORT"

passed=0
failed=0
run() { # name cmd...
  local name="$1"; shift
  local out
  if out="$(timeout 90 "$@" 2>"$LOGDIR/$name.err")" && [[ "$out" == '{"ok":true'* ]]; then
    passed=$((passed + 1)); echo "PASS $name"
  else
    failed=$((failed + 1)); echo "FAIL $name: $out"; cat "$LOGDIR/$name.err" >&2 || true
  fi
}

for t in sse streamable; do
  if [ "$t" = sse ]; then url="http://127.0.0.1:$SSE_PORT/sse"; else url="http://127.0.0.1:$SHTTP_PORT/mcp"; fi
  run "ts-$t-full" node "$HERE/ts_client.mjs" --transport "$t" --url "$url"
  run "py-$t-full" "$PY" "$HERE/py_client.py" --transport "$t" --url "$url"
  run "ts-$t-basic" node "$HERE/ts_client.mjs" --transport "$t" --url "$url" --scenario basic
  run "py-$t-basic" "$PY" "$HERE/py_client.py" --transport "$t" --url "$url" --scenario basic
  # cross-talk: 16 concurrent tagged clients
  cpids=()
  for i in $(seq 1 16); do
    ( run "ts-$t-crosstalk-$i" node "$HERE/ts_client.mjs" --transport "$t" --url "$url" \
        --scenario basic --id-tag "c$i" --repeat 5 >"$LOGDIR/ct-$t-$i.res" ) &
    cpids+=($!)
  done
  for p in "${cpids[@]}"; do wait "$p" || true; done
  for i in $(seq 1 16); do
    if grep -q '^PASS' "$LOGDIR/ct-$t-$i.res"; then passed=$((passed + 1)); else failed=$((failed + 1)); cat "$LOGDIR/ct-$t-$i.res"; fi
  done
  echo "crosstalk $t: done"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
