#!/usr/bin/env bash
# Raw TCP throughput: MIB MiB (default 512) pushed to a local sink directly and through our
# mitmdump as a TCP flow (CONNECT, then --tcp-hosts), in the same run; best of REPEAT (default 3).
#
#   OURS_BIN=path/to/mitmdump bash bench/tcp.sh
#
# The proxy runs with -q (no addons): the relay then keeps no content, so its memory must stay flat
# however much passes; its peak RSS (VmHWM) is printed beside the speed and checked (< 64 MiB).
set -euo pipefail

MIB=${MIB:-512}
REPEAT=${REPEAT:-3}
: "${OURS_BIN:?OURS_BIN must name our mitmdump}"
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mitm-tcpbench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

read -r SINK PROXY <<<"$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')"

wait_port() { # wait_port PORT : up to 10 s
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

python3 "$HERE/tcp.py" sink "$SINK" & PIDS+=($!)
"$OURS_BIN" -q --listen-host 127.0.0.1 -p "$PROXY" --set "confdir=$TMP/conf" --tcp-hosts '^127\.0\.0\.1$' \
    >"$TMP/ours.log" 2>&1 & PIDS+=($!)
OURS_PID=$!
wait_port "$SINK" || { echo "sink did not start"; exit 2; }
wait_port "$PROXY" || { echo "mitmdump did not start"; cat "$TMP/ours.log"; exit 2; }

best() { # best LABEL ARGS... : best MB/s of REPEAT pushes
    local label=$1 i out bytes secs speed top=""
    shift
    for ((i = 0; i < REPEAT; i++)); do
        if ! out=$(python3 "$HERE/tcp.py" push "$SINK" "$MIB" "$@"); then
            echo "  $label: transfer failed ($out)" >&2
            continue
        fi
        read -r bytes secs speed <<<"$out"
        echo "  $label: $MIB MiB in $secs s = $speed MB/s" >&2
        if [[ -z $top ]] || awk -v a="$speed" -v b="$top" 'BEGIN { exit !(a > b) }'; then top=$speed; fi
    done
    echo "$top"
}

direct=$(best direct)
ours=$(best ours "$PROXY")
rss=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$OURS_PID/status" 2>/dev/null || true)

echo
echo "raw TCP, $MIB MiB per transfer, best of $REPEAT (Python client and sink on 127.0.0.1)"
printf '%-32s %10s %10s %10s %18s\n' "row" "direct" "ours" "ours/dir" "ours peak RSS"
ratio=$(awk -v a="${ours:-0}" -v b="${direct:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
printf '%-32s %10s %10s %10s %18s\n' "TCP flow (--tcp-hosts), MB/s" "${direct:-n/a}" "${ours:-n/a}" "$ratio" "${rss:-n/a} MiB"
status=0
if [[ -z $ours ]]; then
    echo "  FAIL raw TCP through ours (not measured)"; status=1
elif awk -v r="${rss:-999}" 'BEGIN { exit !(r < 64) }'; then
    echo "  PASS raw TCP peak RSS: $rss MiB < 64 MiB after $((REPEAT * MIB)) MiB relayed"
else
    echo "  FAIL raw TCP peak RSS: ${rss:-n/a} MiB, needs < 64 MiB"; status=1
fi
exit $status
