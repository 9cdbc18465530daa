#!/usr/bin/env bash
# WebSocket echo round trips per second: direct, through us, and through mitmdump 11, in one run.
#
#   OURS_BIN=path/to/mitmdump [REF_BIN=path/to/venv/bin/mitmdump] bash bench/websocket.sh
#
# A Python `websockets` echo server on 127.0.0.1; a `websocket-client` client sends WS_COUNT text
# messages of WS_SIZE bytes (defaults 20000 and 100; WS_REF_COUNT, default 5000, through mitmdump 11,
# which is slower) over one connection, each waiting for its echo. The proxies run in reverse mode
# (`--mode reverse:http://127.0.0.1:PORT`, `-q`), so the client needs no proxy support. Both Python
# ends cost CPU on this 2-core machine too: the direct figure is the client/server ceiling.
set -euo pipefail

WS_COUNT=${WS_COUNT:-20000}
WS_REF_COUNT=${WS_REF_COUNT:-5000}
WS_SIZE=${WS_SIZE:-100}
: "${OURS_BIN:?OURS_BIN must name our mitmdump}"
REF_BIN=${REF_BIN:-}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mitm-wsbench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

python3 -c 'import websockets, websocket' 2>/dev/null ||
    python3 -m pip install -q websockets websocket-client >/dev/null 2>&1 ||
    { echo "WebSocket: SKIP (python packages websockets and websocket-client unavailable)"; exit 0; }

read -r -a ports <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
ECHO_PORT=${ports[0]}

wait_port() { # wait_port PORT : up to 15 s
    local i
    for ((i = 0; i < 150; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

python3 "$HERE/ws_echo.py" serve "$ECHO_PORT" >"$TMP/echo.log" 2>&1 &
PIDS+=($!)
wait_port "$ECHO_PORT" || { cat "$TMP/echo.log" >&2; echo "WebSocket: echo server did not start" >&2; exit 1; }

# rate NAME PORT COUNT : messages/s through 127.0.0.1:PORT (empty on failure).
rate() {
    timeout 300 python3 "$HERE/ws_echo.py" client "ws://127.0.0.1:$2/" "$3" "$WS_SIZE" 2>"$TMP/$1.err" || {
        echo "WebSocket $1 failed: $(tail -n 3 "$TMP/$1.err")" >&2
    }
}

# through NAME BIN PORT COUNT : start BIN in reverse mode in front of the echo server, measure, stop.
through() {
    local name=$1 bin=$2 port=$3 count=$4 pid result
    "$bin" -q --mode "reverse:http://127.0.0.1:$ECHO_PORT" --listen-host 127.0.0.1 -p "$port" \
        --set "confdir=$TMP/conf-$name" >"$TMP/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if wait_port "$port"; then
        result=$(rate "$name" "$port" "$count")
    else
        echo "WebSocket: $name did not listen" >&2
        result=""
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$result"
}

direct=$(rate direct "$ECHO_PORT" "$WS_COUNT")
ours=$(through ours "$OURS_BIN" "${ports[1]}" "$WS_COUNT")
ref=""
[[ -n $REF_BIN ]] && ref=$(through ref "$REF_BIN" "${ports[2]}" "$WS_REF_COUNT")

ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }' || echo "n/a"; }
echo
counts="$WS_COUNT direct and ours"
[[ -n $REF_BIN ]] && counts+=", $WS_REF_COUNT through mitmdump 11"
echo "WebSocket echo round trips ($WS_SIZE-byte text messages, one connection; $counts)"
printf '%-26s %-5s %10s %10s %10s %13s %15s\n' "row" "unit" "direct" "ours" "ours/dir" "mitmdump 11" "ours/mitmdump 11"
printf '%-26s %-5s %10s %10s %10s %13s %15s\n' "WebSocket echo" "msg/s" "${direct:-n/a}" "${ours:-n/a}" \
    "$(ratio "$ours" "$direct")" "${ref:-n/a}" "$(ratio "$ours" "$ref")"
