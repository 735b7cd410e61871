#!/usr/bin/env bash
# Runs mcp-bridge as a cluster on this machine, like the design note: Redis, three bridge
# instances sharing their sessions through it, and nginx in front (round-robin-safe: no
# sticky routing needed).
#
#   scripts/cluster.sh up        # build if needed, start everything, print the URLs
#   scripts/cluster.sh status    # what runs, and each instance's /readyz
#   scripts/cluster.sh down      # stop exactly what `up` started
#
# Everything listens on 127.0.0.1. Settings (environment):
#   CLUSTER_DIR    state dir: pid files, logs, generated configs   (default .cluster)
#   NGINX_PORT     nginx                                            (default 8050)
#   BRIDGE_PORTS   the instances, space-separated                   (default "8051 8052 8053")
#   REDIS_PORT     redis-server                                     (default 8059)
#   BRIDGE_CONFIG  the bridge config                                (default examples/mcp-bridge.toml)
#   NGINX_CONF     the nginx config to adapt                        (default deploy/nginx/nginx.conf)
#   MCP_BRIDGE_BIN a prebuilt binary: skips `cargo build --release`  (default target/release/mcp-bridge)
# The instances are named bridge-1, bridge-2, ... (`--instance-id`), and log to
# $CLUSTER_DIR/bridge-N.log; nginx runs with $CLUSTER_DIR/nginx as its prefix.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

STATE="${CLUSTER_DIR:-.cluster}"
case "$STATE" in /*) ;; *) STATE="$ROOT/$STATE" ;; esac
NGINX_PORT="${NGINX_PORT:-8050}"
read -r -a PORTS <<<"${BRIDGE_PORTS:-8051 8052 8053}"
REDIS_PORT="${REDIS_PORT:-8059}"
BRIDGE_CONFIG="${BRIDGE_CONFIG:-examples/mcp-bridge.toml}"
NGINX_CONF="${NGINX_CONF:-deploy/nginx/nginx.conf}"
BIN="${MCP_BRIDGE_BIN:-$ROOT/target/release/mcp-bridge}"
SERVER_NAME="mcp-bridge.test"

log() { printf '[cluster] %s\n' "$*"; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

need() {
  local tool="$1" hint="$2"
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "missing $tool: $hint"
}
nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }

# The pid in a pid file, if that process is alive.
alive_pid() {
  local f="$1" pid
  [ -s "$f" ] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port="$1" what="$2" tries=200
  while ! port_busy "$port"; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || die "$what did not listen on 127.0.0.1:$port within 20 s (see $STATE)"
    sleep 0.1
  done
}

# Stops the process in a pid file (TERM, then KILL after 10 s) and removes the file.
stop_pidfile() {
  local f="$1" what="$2" pid
  if pid="$(alive_pid "$f")"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$what (pid $pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $what (pid $pid)"
  fi
  rm -f "$f"
}

readyz() { curl -fsS --max-time 2 "http://127.0.0.1:$1/readyz" 2>/dev/null || echo "(no answer)"; }

# deploy/nginx/nginx.conf, adapted: listen on loopback $NGINX_PORT, backends on $PORTS.
render_nginx_conf() {
  local out="$1" servers="" p
  for p in "${PORTS[@]}"; do
    servers+="        server 127.0.0.1:$p max_fails=3 fail_timeout=10s;"$'\n'
  done
  if [ -f "$NGINX_CONF" ]; then
    grep -q '^[[:space:]]*listen[[:space:]]' "$NGINX_CONF" || die "$NGINX_CONF has no listen line"
    grep -q 'upstream mcp_router_backend' "$NGINX_CONF" || die "$NGINX_CONF has no upstream mcp_router_backend"
    # Replace the listen line, and the upstream's server lines with ours (inserted where the
    # first one was).
    awk -v listen="        listen 127.0.0.1:$NGINX_PORT;" -v servers="$servers" '
      /^[[:space:]]*listen[[:space:]]/ { print listen; next }
      /upstream mcp_router_backend/ { inup = 1 }
      inup && /^[[:space:]]*server[[:space:]]+[0-9]/ { if (!done) { printf "%s", servers; done = 1 } next }
      inup && /^[[:space:]]*}/ { inup = 0 }
      { print }
    ' "$NGINX_CONF" >"$out"
  else
    log "$NGINX_CONF not found; generating a minimal streaming-safe config"
    cat >"$out" <<EOF
worker_processes auto;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log logs/access.log;
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
    upstream mcp_router_backend {
        least_conn;
$servers        keepalive 32;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        server_name $SERVER_NAME;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_buffering off;
        proxy_cache off;
        proxy_read_timeout 60s;
        gzip off;
        client_max_body_size 8m;
        location / { proxy_pass http://mcp_router_backend; }
    }
}
EOF
  fi
}

up() {
  need redis-server "run scripts/test-deps (apt-get install redis-server)"
  need redis-cli "run scripts/test-deps (apt-get install redis-server)"
  need nginx "run scripts/test-deps (apt-get install nginx)"
  need curl "apt-get install curl"
  [ -n "${MCP_BRIDGE_BIN:-}" ] || need cargo "install Rust (https://rustup.rs)"
  [ -f "$BRIDGE_CONFIG" ] || die "no bridge config at $BRIDGE_CONFIG"
  mkdir -p "$STATE/nginx/logs" "$STATE/nginx/temp"

  # Refuse to start twice, or onto ports someone else holds.
  local started=""
  for f in "$STATE"/*.pid "$STATE/nginx/logs/nginx.pid"; do
    [ -e "$f" ] && alive_pid "$f" >/dev/null && started+=" $(basename "$f" .pid)"
  done
  [ -z "$started" ] || die "already running:$started (scripts/cluster.sh status|down)"
  for p in "$REDIS_PORT" "${PORTS[@]}" "$NGINX_PORT"; do
    port_busy "$p" && die "127.0.0.1:$p is already in use (set REDIS_PORT/BRIDGE_PORTS/NGINX_PORT)"
  done

  # From here on, a failure stops whatever was already started.
  trap 'if [ "${UP_DONE:-}" != 1 ]; then log "up failed; stopping what it started"; down; fi' EXIT

  if [ -z "${MCP_BRIDGE_BIN:-}" ]; then
    log "cargo build --release (a no-op when up to date)"
    cargo build --release --bin mcp-bridge --bin mcp-echo-server
  fi
  [ -x "$BIN" ] || die "no $BIN after the build"
  if grep -q 'server-everything' "$BRIDGE_CONFIG" && [ ! -d tests/clients/node_modules/@modelcontextprotocol/server-everything ]; then
    log "note: the 'everything' server needs tests/clients/node_modules (scripts/test-deps); 'echo' works without it"
  fi

  log "redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --dir "$STATE" \
    --save "" --appendonly no
  wait_port "$REDIS_PORT" redis-server
  for _ in $(seq 50); do [ -s "$STATE/redis.pid" ] && break; sleep 0.1; done

  # The example config, plus the public name nginx serves, so that a client sending
  # `Host: mcp-bridge.test` passes the bridge's DNS-rebinding check (it listens on loopback).
  local config="$STATE/mcp-bridge.toml"
  {
    echo "# Generated by scripts/cluster.sh from $BRIDGE_CONFIG."
    echo "allowed_origins = [\"http://$SERVER_NAME\", \"http://$SERVER_NAME:$NGINX_PORT\", \"http://127.0.0.1:$NGINX_PORT\"]"
    grep -v '^[[:space:]]*allowed_origins[[:space:]]*=' "$BRIDGE_CONFIG"
  } >"$config"
  "$BIN" check-config "$config" >/dev/null

  local i=0 p
  for p in "${PORTS[@]}"; do
    i=$((i + 1))
    log "bridge-$i on 127.0.0.1:$p"
    nohup "$BIN" serve --config "$config" --listen "127.0.0.1:$p" --instance-id "bridge-$i" \
      --redis "redis://127.0.0.1:$REDIS_PORT" >"$STATE/bridge-$i.log" 2>&1 </dev/null &
    echo $! >"$STATE/bridge-$i.pid"
  done
  i=0
  for p in "${PORTS[@]}"; do
    i=$((i + 1))
    wait_port "$p" "bridge-$i"
  done

  log "nginx on 127.0.0.1:$NGINX_PORT"
  render_nginx_conf "$STATE/nginx/nginx.conf"
  "$(nginx_bin)" -p "$STATE/nginx" -e logs/error.log -c "$STATE/nginx/nginx.conf" -t -q \
    || die "nginx rejected $STATE/nginx/nginx.conf"
  "$(nginx_bin)" -p "$STATE/nginx" -e logs/error.log -c "$STATE/nginx/nginx.conf"
  wait_port "$NGINX_PORT" nginx

  echo
  echo "mcp-bridge cluster is up (state in $STATE):"
  echo "  legacy SSE:       http://127.0.0.1:$NGINX_PORT/sse/echo         (and /sse/everything)"
  echo "  Streamable HTTP:  http://127.0.0.1:$NGINX_PORT/mcp/echo         (and /mcp/everything)"
  echo "  under a prefix:   http://127.0.0.1:$NGINX_PORT/mcp-bridge/sse/echo"
  echo "  by name:          curl --resolve $SERVER_NAME:$NGINX_PORT:127.0.0.1 http://$SERVER_NAME:$NGINX_PORT/readyz"
  i=0
  for p in "${PORTS[@]}"; do
    i=$((i + 1))
    echo "  bridge-$i:         http://127.0.0.1:$p   (log $STATE/bridge-$i.log)"
  done
  echo "  redis:            redis://127.0.0.1:$REDIS_PORT"
  echo "Stop with: scripts/cluster.sh down"
  UP_DONE=1
}

down() {
  [ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  local pid
  if pid="$(alive_pid "$STATE/nginx/logs/nginx.pid")"; then
    "$(nginx_bin)" -p "$STATE/nginx" -e logs/error.log -c "$STATE/nginx/nginx.conf" -s stop 2>/dev/null \
      || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    log "stopped nginx (pid $pid)"
  fi
  rm -f "$STATE/nginx/logs/nginx.pid"
  local f
  for f in "$STATE"/bridge-*.pid; do
    [ -e "$f" ] || continue
    stop_pidfile "$f" "$(basename "$f" .pid)"
  done
  # Last, so that the bridges could hand their leases back on SIGTERM.
  stop_pidfile "$STATE/redis.pid" redis-server
  log "down"
}

status() {
  local pid f name p i=0
  if [ ! -d "$STATE" ]; then
    echo "not running ($STATE does not exist)"
    return 0
  fi
  if pid="$(alive_pid "$STATE/redis.pid")"; then
    echo "redis-server  pid $pid  127.0.0.1:$REDIS_PORT  ping: $(redis-cli -p "$REDIS_PORT" ping 2>&1 || true)"
  else
    echo "redis-server  stopped"
  fi
  for p in "${PORTS[@]}"; do
    i=$((i + 1))
    name="bridge-$i"
    f="$STATE/$name.pid"
    if pid="$(alive_pid "$f")"; then
      echo "$name      pid $pid  127.0.0.1:$p  readyz: $(readyz "$p")"
    else
      echo "$name      stopped"
    fi
  done
  if pid="$(alive_pid "$STATE/nginx/logs/nginx.pid")"; then
    echo "nginx         pid $pid  127.0.0.1:$NGINX_PORT  readyz via nginx: $(readyz "$NGINX_PORT")"
  else
    echo "nginx         stopped"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: scripts/cluster.sh up|down|status" >&2
    exit 2
    ;;
esac
