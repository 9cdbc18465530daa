#!/usr/bin/env bash
# Flow file speed: write and read back N small flows, ours beside mitmdump 11 in the same run.
#
#   OURS_BIN=path/to/mitmdump REF_BIN=path/to/venv/bin/mitmdump bash bench/flowfiles.sh
#
# The input (FLOWS small HTTP flows, default 100000) is made with mitmproxy's own test flows, so
# the venv of mitmproxy 11 is needed. Each tool then:
#   write: mitmdump -q -n -r input -w copy   (read, run the addons, write every flow)
#   read:  mitmdump -q -n -r copy            (read every flow it wrote itself)
# Prints seconds, flows/s and MB/s, and checks the issue's target: reading >= 10x mitmproxy's flows/s.
set -euo pipefail

FLOWS=${FLOWS:-100000}
: "${OURS_BIN:?OURS_BIN must name our mitmdump}"
: "${REF_BIN:?REF_BIN must name mitmdump 11 (from its venv)}"
PYTHON="$(dirname "$REF_BIN")/python"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mitm-flowbench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

seconds() { # seconds CMD... : wall time of CMD in seconds (3 decimals)
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

"$PYTHON" "$(dirname "$0")/flowfiles.py" "$TMP/input.mitm" "$FLOWS"
size=$(stat -c %s "$TMP/input.mitm")

ours_write=$(seconds "$OURS_BIN" -q -n -r "$TMP/input.mitm" -w "$TMP/ours.mitm")
ours_read=$(seconds "$OURS_BIN" -q -n -r "$TMP/ours.mitm")
ref_write=$(seconds "$REF_BIN" -q -n -r "$TMP/input.mitm" -w "$TMP/ref.mitm")
ref_read=$(seconds "$REF_BIN" -q -n -r "$TMP/ref.mitm")

# Both copies must hold every flow: count them with mitmproxy's reader.
count() { "$PYTHON" -c 'import sys; from mitmproxy import io; print(sum(1 for _ in io.FlowReader(open(sys.argv[1], "rb")).stream()))' "$1"; }
ours_count=$(count "$TMP/ours.mitm")
ref_count=$(count "$TMP/ref.mitm")

row() { # row NAME SECONDS BYTES
    awk -v n="$1" -v s="$2" -v b="$3" -v f="$FLOWS" \
        'BEGIN { printf "%-26s %8.2f s %10.0f flows/s %8.1f MB/s\n", n, s, f / s, b / s / 1e6 }'
}
echo
echo "flow files: $FLOWS small flows, $(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }') MB (input written by mitmproxy)"
row "ours: read + write (-w)" "$ours_write" "$size"
row "ours: read" "$ours_read" "$(stat -c %s "$TMP/ours.mitm")"
row "mitmdump 11: read + write" "$ref_write" "$size"
row "mitmdump 11: read" "$ref_read" "$(stat -c %s "$TMP/ref.mitm")"
echo "flows in the copies (read by mitmproxy): ours $ours_count, mitmdump 11 $ref_count"
ratio=$(awk -v o="$ours_read" -v r="$ref_read" 'BEGIN { printf "%.1f", r / o }')
if [[ $ours_count == "$FLOWS" ]] && awk -v x="$ratio" 'BEGIN { exit !(x >= 10) }'; then
    echo "  PASS flow file reading: ours/mitmdump 11 flows per second: ${ratio}x >= 10"
else
    echo "  FAIL flow file reading: ours/mitmdump 11 flows per second: ${ratio}x (needs >= 10, and all $FLOWS flows)"
    exit 1
fi
