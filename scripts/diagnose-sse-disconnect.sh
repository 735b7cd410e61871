#!/usr/bin/env bash
# Holds an SSE stream open like a client and reports how long it lasted and why it ended:
#   scripts/diagnose-sse-disconnect.sh http://mcp-bridge.test/sse/mcp-server-v6 600
# Extra arguments go to `mcp-bridge diagnose` (e.g. --json, --mcp, --ping-interval 10).
# Builds the binary if needed; MCP_BRIDGE_BIN=/path/to/mcp-bridge skips the build.
# Exit status: 0 if the stream stayed up for the whole duration.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    echo "usage: $0 URL [DURATION_SECONDS] [mcp-bridge diagnose options...]" >&2
    exit 2
fi
url=$1
duration=${2:-600}
shift $(( $# >= 2 ? 2 : 1 ))

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${MCP_BRIDGE_BIN:-}
if [[ -z "$bin" ]]; then
    if command -v cargo >/dev/null; then
        cargo build --quiet --manifest-path "$root/Cargo.toml" --bin mcp-bridge >&2
    fi
    bin="$root/target/debug/mcp-bridge"
fi
if [[ ! -x "$bin" ]]; then
    echo "$0: no mcp-bridge binary at $bin (install Rust and run cargo build, or set MCP_BRIDGE_BIN)" >&2
    exit 2
fi
exec "$bin" diagnose "$url" --duration "$duration" "$@"
