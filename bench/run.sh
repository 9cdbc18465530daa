#!/usr/bin/env bash
# Benchmark our Swift mitmdump against a direct nginx origin and against
# the real mitmdump (mitmproxy 11.0.2), on loopback only.
#
# Usage (from the repository root):
#   bash bench/run.sh
#
# Environment knobs (all optional):
#   MITMDUMP=/path        our mitmdump binary; skips `swift build`
#   DURATION=10s          wrk duration per row, direct and ours
#   REF_DURATION=5s       wrk duration per row through mitmdump 11 (it is slow)
#   WARMUP=1s             wrk warm-up run before every measured row (0 = none)
#   THREADS=1 CONNS=32    wrk threads / connections
#   WRK_TIMEOUT=10s       wrk per-request timeout
#   NGINX_WORKERS=1       nginx worker_processes (1 keeps the origin on one core
#                         of this 2-core machine; "auto" is allowed)
#   BIG_REPEAT=3          100 MiB downloads per target (best speed is reported)
#   BIG_MAX_TIME=120      curl --max-time for one 100 MiB download (seconds)
#   BIG_ARGS="--set stream_large_bodies=1m"
#                         extra proxy flags for the 100 MiB download only (both
#                         proxies); mitmproxy buffers whole bodies unless told to
#                         stream them. Set BIG_ARGS= to measure the default.
#   REFERENCE=1           0 skips the mitmdump 11 column
#   MITMPROXY_VERSION=11.0.2
#   KEEP_TMP=1            keep the temp dir (configs, logs) for inspection
#   TCP=1                 0 skips the raw TCP rows (bench/tcp.sh: MIB=512 pushed
#                         directly and through a --tcp-hosts TCP flow, REPEAT=3)
#
#   WEBSOCKET=1           0 skips the WebSocket echo rows (bench/websocket.sh)
#
# Output: one table on stdout, also written to bench/out/results.txt.
# Exit status: 0 all targets PASS, 1 some target FAIL or could not be
# measured, 2 the benchmark itself could not run.

set -euo pipefail

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
VENV="$BENCH_DIR/.venv-mitmproxy"

DURATION=${DURATION:-10s}
REF_DURATION=${REF_DURATION:-5s}
WARMUP=${WARMUP:-1s}
THREADS=${THREADS:-1}
CONNS=${CONNS:-32}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
NGINX_WORKERS=${NGINX_WORKERS:-1}
BIG_REPEAT=${BIG_REPEAT:-3}
BIG_MAX_TIME=${BIG_MAX_TIME:-120}
BIG_ARGS=${BIG_ARGS---set stream_large_bodies=1m}
REFERENCE=${REFERENCE:-1}
MITMPROXY_VERSION=${MITMPROXY_VERSION:-11.0.2}
KEEP_TMP=${KEEP_TMP:-0}

# Rows of the table, in order. Each wrk row is "name|scheme|path|extra".
ROWS=(
    "plain 100 B keep-alive|http|/100b|"
    "plain 1 MiB keep-alive|http|/1m|"
    "TLS 100 B keep-alive|https|/100b|"
    "TLS 1 MiB keep-alive|https|/1m|"
    "TLS new conn per request|https|/100b|close"
)
BIG_ROW="plain 100 MiB download"

# Results: RESULT[target/row] = number; target is direct, ours or ref.
declare -A RESULT=()
declare -A NOTE=()     # NOTE[target/row] = warning text (errors seen)
declare -A RSS=()      # RSS[target/phase] = VmHWM in KiB
PIDS=()                # every background process we started
TMP=""
OURS_BIN=""
REF_BIN=""
BENCH_START=$SECONDS

log() { printf '[bench %3ds] %s\n' "$((SECONDS - BENCH_START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

# ---------------------------------------------------------------------------
# Process management and cleanup
# ---------------------------------------------------------------------------

# start_bg LOGFILE CMD... : start CMD in its own session (so that the whole
# process group, e.g. nginx master + workers, can be signalled at once) and
# set BG_PID. setsid does not fork here (our child is no group leader), so
# the pid is the pid of CMD itself. Never call this in a $(...) subshell:
# PIDS must be recorded in the main shell for the EXIT trap.
start_bg() {
    local logfile=$1; shift
    setsid "$@" >"$logfile" 2>&1 </dev/null &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# stop_pid PID : TERM the process group, wait up to 5 s, then KILL it.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_TMP == 1 ]]; then
            log "kept temp dir $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_port PORT PID NAME : bounded wait (15 s) until PORT accepts TCP
# connections; fails early if PID died.
wait_port() {
    local port=$1 pid=$2 name=$3 i
    for ((i = 0; i < 150; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) exited before listening on $port"
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not listen on $port within 15 s"
    return 1
}

# free_ports N : print N distinct free loopback TCP ports.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# vmhwm PID : peak resident set size of PID in KiB (empty if unknown).
vmhwm() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------

ensure_tools() {
    local missing=() tool
    for tool in nginx wrk curl openssl; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    command -v python3 >/dev/null 2>&1 || die "python3 is required"
    command -v setsid >/dev/null 2>&1 || die "setsid (util-linux) is required"
    ((${#missing[@]} == 0)) && return 0
    log "installing missing tools: ${missing[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
    # Debian starts the packaged nginx service on port 80; we only want our own.
    if [[ " ${missing[*]} " == *" nginx "* ]] && [[ -s /run/nginx.pid ]]; then
        "${sudo[@]}" nginx -s stop 2>/dev/null || true
    fi
}

# build_ours : set OURS_BIN (empty if the build failed).
build_ours() {
    if [[ -n ${MITMDUMP:-} ]]; then
        [[ -x $MITMDUMP ]] || die "MITMDUMP=$MITMDUMP is not executable"
        OURS_BIN=$(cd "$REPO_DIR" && realpath "$MITMDUMP")
        log "ours: $OURS_BIN (given by MITMDUMP)"
        return 0
    fi
    log "building mitmdump (swift build -c release --product mitmdump) ..."
    if (cd "$REPO_DIR" && swift build -c release --product mitmdump) >"$TMP/swift-build.log" 2>&1; then
        OURS_BIN="$(cd "$REPO_DIR" && swift build -c release --show-bin-path)/mitmdump"
        log "ours: $OURS_BIN"
    else
        log "swift build failed; the 'ours' column will be n/a. Last lines:"
        tail -n 20 "$TMP/swift-build.log" >&2
        OURS_BIN=""
    fi
}

# setup_reference : set REF_BIN to a mitmdump $MITMPROXY_VERSION from a venv,
# or leave it empty (with a message) if that cannot be made.
setup_reference() {
    if [[ $REFERENCE != 1 ]]; then
        log "REFERENCE=$REFERENCE: skipping the mitmdump $MITMPROXY_VERSION column"
        return 0
    fi
    local bin="$VENV/bin/mitmdump"
    if [[ -x $bin ]] && "$VENV/bin/python" -c \
        "import importlib.metadata as m, sys; sys.exit(m.version('mitmproxy') != '$MITMPROXY_VERSION')" 2>/dev/null; then
        REF_BIN=$bin
    else
        log "creating $VENV with mitmproxy==$MITMPROXY_VERSION ..."
        if python3 -m venv "$VENV" >"$TMP/venv.log" 2>&1 &&
            timeout 600 "$VENV/bin/pip" install -q "mitmproxy==$MITMPROXY_VERSION" >>"$TMP/venv.log" 2>&1; then
            REF_BIN=$bin
        else
            log "SKIP mitmdump $MITMPROXY_VERSION rows: could not install it. Last lines:"
            tail -n 10 "$TMP/venv.log" >&2
            return 0
        fi
    fi
    log "mitmdump $MITMPROXY_VERSION: $REF_BIN"
}

# make_origin_files : self-signed cert and the three bodies.
make_origin_files() {
    mkdir -p "$TMP/www" "$TMP/nginx-tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
        -keyout "$TMP/origin-key.pem" -out "$TMP/origin-cert.pem" \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
        >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl failed"; }
    head -c 100 /dev/zero | tr '\0' 'x' >"$TMP/www/100b"
    head -c $((1024 * 1024)) /dev/urandom >"$TMP/www/1m"
    head -c $((100 * 1024 * 1024)) /dev/urandom >"$TMP/www/100m"
}

# start_nginx : render the template and start nginx on NGINX_PORT/NGINX_TLS.
start_nginx() {
    local user_line=""
    # As root the workers would drop to "nobody"; keep our own user so they can
    # read the temp dir.
    ((EUID == 0)) && user_line="user $(id -un) $(id -gn);"
    sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@TLSPORT@|$NGINX_TLS|g" \
        -e "s|@WORKERS@|$NGINX_WORKERS|g" -e "s|@USER_LINE@|$user_line|g" \
        "$BENCH_DIR/nginx.conf.template" >"$TMP/nginx.conf"
    nginx -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" ||
        die "nginx config test failed (see $TMP/nginx.conf)"
    start_bg "$TMP/nginx.out" nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf"
    NGINX_PID=$BG_PID
    if ! wait_port "$NGINX_PORT" "$NGINX_PID" nginx || ! wait_port "$NGINX_TLS" "$NGINX_PID" nginx; then
        cat "$TMP/nginx-error.log" "$TMP/nginx.out" >&2 2>/dev/null || true
        die "nginx did not start"
    fi
    check_body "http://127.0.0.1:$NGINX_PORT/100b" 100 || die "nginx does not serve /100b"
    check_body "https://127.0.0.1:$NGINX_TLS/1m" $((1024 * 1024)) || die "nginx does not serve TLS /1m"
    log "nginx (pid $NGINX_PID, worker_processes $NGINX_WORKERS) on :$NGINX_PORT (plain) and :$NGINX_TLS (TLS)"
}

# check_body URL SIZE : one GET must return 200 with SIZE bytes.
check_body() {
    local got
    got=$(curl -sk --max-time 20 -o /dev/null -w '%{http_code} %{size_download}' "$1" 2>/dev/null) || true
    [[ $got == "200 $2" ]] && return 0
    log "GET $1 -> '${got:-no response}', expected '200 $2'"
    return 1
}

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

# run_wrk TARGET ROWNAME URL DURATION CLOSE : store req/s in RESULT.
run_wrk() {
    local target=$1 row=$2 url=$3 dur=$4 close=$5
    local args=(-t"$THREADS" -c"$CONNS" --timeout "$WRK_TIMEOUT")
    [[ $close == close ]] && args+=(-H "Connection: close")
    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
        wrk "${args[@]}" -d"$WARMUP" "$url" >/dev/null 2>&1 || true
    fi
    local out
    out=$(wrk "${args[@]}" -d"$dur" "$url" 2>&1) || true
    printf '== %s / %s: wrk %s -d%s %s\n%s\n\n' "$target" "$row" "${args[*]}" "$dur" "$url" "$out" >>"$TMP/wrk.log"

    local rps total non2xx sockerr
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    total=$(awk '/requests in/ { print $1 }' <<<"$out")
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' <<<"$out")
    sockerr=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' <<<"$out")
    if [[ -z $rps || -z $total || $total == 0 ]]; then
        log "$target / $row: wrk produced no result"
        printf '%s\n' "$out" >&2
        NOTE[$target/$row]="wrk failed"
        return 0
    fi
    RESULT[$target/$row]=$rps
    local bad=$((${non2xx:-0} + ${sockerr:-0}))
    if ((bad * 100 > total)); then
        NOTE[$target/$row]="$bad of $total requests failed (non-2xx ${non2xx:-0}, socket errors ${sockerr:-0})"
        log "WARNING $target / $row: ${NOTE[$target/$row]}"
    fi
    log "$target / $row: $rps req/s"
}

# run_rows TARGET PLAINPORT TLSPORT SCHEME DURATION : the wrk rows of one scheme.
run_rows() {
    local target=$1 plain=$2 tls=$3 want=$4 dur=$5 spec name scheme path close port
    for spec in "${ROWS[@]}"; do
        IFS='|' read -r name scheme path close <<<"$spec"
        [[ $scheme == "$want" ]] || continue
        port=$plain
        [[ $scheme == https ]] && port=$tls
        run_wrk "$target" "$name" "$scheme://127.0.0.1:$port$path" "$dur" "$close"
    done
}

# run_big TARGET PORT : best of BIG_REPEAT 100 MiB downloads, in MB/s.
run_big() {
    local target=$1 port=$2 i out best="" code size speed
    for ((i = 0; i < BIG_REPEAT; i++)); do
        out=$(curl -s --max-time "$BIG_MAX_TIME" -o /dev/null \
            -w '%{http_code} %{size_download} %{speed_download}' \
            "http://127.0.0.1:$port/100m" 2>/dev/null) || true
        read -r code size speed <<<"$out"
        if [[ $code != 200 || $size != $((100 * 1024 * 1024)) ]]; then
            NOTE[$target/$BIG_ROW]="download failed: ${out:-no response}"
            log "$target / $BIG_ROW: ${NOTE[$target/$BIG_ROW]}"
            return 0
        fi
        speed=$(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1e6 }')
        log "$target / $BIG_ROW: $speed MB/s"
        if [[ -z $best ]] || awk -v a="$speed" -v b="$best" 'BEGIN { exit !(a > b) }'; then
            best=$speed
        fi
    done
    RESULT[$target/$BIG_ROW]=$best
}

# start_proxy TARGET BIN MODE PORT LOGNAME EXTRA... : start one mitmdump in
# reverse mode; set BG_PID. Returns 1 if it does not come up.
start_proxy() {
    local target=$1 bin=$2 mode=$3 port=$4 logname=$5
    shift 5
    local args=(-q --mode "$mode" --listen-host 127.0.0.1 -p "$port" --set "confdir=$TMP/conf-$target")
    [[ $mode == reverse:https* ]] && args+=(-k)
    args+=("$@")
    printf '%s %s\n' "$bin" "${args[*]}" >>"$TMP/commands.log"
    start_bg "$TMP/$logname.log" "$bin" "${args[@]}"
    if ! wait_port "$port" "$BG_PID" "$target mitmdump ($mode)"; then
        tail -n 20 "$TMP/$logname.log" >&2
        stop_pid "$BG_PID"
        return 1
    fi
}

# proxy_phase TARGET BIN PHASE DURATION : one fresh proxy process per phase
# (plain wrk rows, TLS wrk rows, 100 MiB download); records its VmHWM.
proxy_phase() {
    local target=$1 bin=$2 phase=$3 dur=$4 mode scheme=http extra=()
    # A fresh port per process, so that TIME_WAIT sockets never matter.
    local port=${PROXY_PORTS[0]}
    PROXY_PORTS=("${PROXY_PORTS[@]:1}")
    case $phase in
        plain) mode="reverse:http://127.0.0.1:$NGINX_PORT" ;;
        tls) mode="reverse:https://127.0.0.1:$NGINX_TLS" scheme=https ;;
        big)
            mode="reverse:http://127.0.0.1:$NGINX_PORT"
            # shellcheck disable=SC2206 # BIG_ARGS is deliberately word-split
            extra=($BIG_ARGS)
            ;;
    esac

    if ! start_proxy "$target" "$bin" "$mode" "$port" "$target-$phase" "${extra[@]}"; then
        log "$target: mitmdump did not start for the $phase rows"
        return 0
    fi
    local pid=$BG_PID
    local sample="/100b" size=100
    [[ $phase == big ]] && sample="/1m" size=$((1024 * 1024))
    if check_body "$scheme://127.0.0.1:$port$sample" "$size"; then
        if [[ $phase == big ]]; then
            run_big "$target" "$port"
        else
            run_rows "$target" "$port" "$port" "$scheme" "$dur"
        fi
    else
        log "$target: proxy ($phase) does not forward correctly; skipping its rows"
    fi
    if kill -0 "$pid" 2>/dev/null; then
        RSS[$target/$phase]=$(vmhwm "$pid")
    else
        log "$target: mitmdump ($phase) died during the run; last log lines:"
        tail -n 20 "$TMP/$target-$phase.log" >&2
    fi
    stop_pid "$pid"
}

measure_direct() {
    run_rows direct "$NGINX_PORT" "$NGINX_TLS" http "$DURATION"
    run_rows direct "$NGINX_PORT" "$NGINX_TLS" https "$DURATION"
    run_big direct "$NGINX_PORT"
}

# measure_proxy TARGET BIN DURATION
measure_proxy() {
    local target=$1 bin=$2 dur=$3
    [[ -n $bin ]] || return 0
    proxy_phase "$target" "$bin" plain "$dur"
    proxy_phase "$target" "$bin" tls "$dur"
    proxy_phase "$target" "$bin" big "$dur"
}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# ratio A B : A/B with 2 decimals, or n/a.
ratio() {
    [[ -n $1 && -n $2 ]] || { echo "n/a"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
}

fmt_num() {
    [[ -n $1 ]] || { echo "n/a"; return; }
    awk -v a="$1" 'BEGIN { if (a >= 100) printf "%.0f", a; else printf "%.1f", a }'
}

fmt_mib() {
    [[ -n $1 ]] || { echo "n/a"; return; }
    awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'
}

# max_kib A B ... : largest non-empty value.
max_kib() {
    local m="" v
    for v in "$@"; do
        [[ -n $v ]] || continue
        [[ -z $m || $v -gt $m ]] && m=$v
    done
    echo "$m"
}

# check NAME VALUE OP LIMIT : print PASS/FAIL line, remember failures.
FAILED=0
check() {
    local name=$1 value=$2 op=$3 limit=$4
    if [[ -z $value || $value == n/a ]]; then
        printf '  %-4s %s (not measured)\n' "FAIL" "$name"
        FAILED=1
        return
    fi
    if awk -v v="$value" -v l="$limit" -v op="$op" \
        'BEGIN { exit !((op == ">=" && v >= l) || (op == "<" && v < l)) }'; then
        printf '  %-4s %s: %s %s %s\n' "PASS" "$name" "$value" "$op" "$limit"
    else
        printf '  %-4s %s: %s, needs %s %s\n' "FAIL" "$name" "$value" "$op" "$limit"
        FAILED=1
    fi
}

report() {
    local spec name rows=() unit d o r ours_ref
    for spec in "${ROWS[@]}"; do rows+=("${spec%%|*}"); done
    rows+=("$BIG_ROW")
    local ref_label="mitmdump ${MITMPROXY_VERSION%%.*}"

    echo
    echo "swift-mitmproxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
    echo "wrk -t$THREADS -c$CONNS; -d$DURATION (direct, ours), -d$REF_DURATION ($ref_label); warm-up $WARMUP"
    echo "nginx worker_processes $NGINX_WORKERS; 100 MiB: curl best of $BIG_REPEAT${BIG_ARGS:+, proxy flags: $BIG_ARGS}"
    echo "load average at start: $LOAD_AT_START (other work on this machine makes the numbers noisy)"
    echo "ours: ${OURS_BIN:-n/a}"
    echo "$ref_label: ${REF_BIN:-n/a (skipped)}"
    echo
    printf '%-26s %-5s %10s %10s %10s %13s %15s\n' \
        "row" "unit" "direct" "ours" "ours/dir" "$ref_label" "ours/$ref_label"
    for name in "${rows[@]}"; do
        unit="req/s"
        [[ $name == "$BIG_ROW" ]] && unit="MB/s"
        d=${RESULT[direct/$name]:-}
        o=${RESULT[ours/$name]:-}
        r=${RESULT[ref/$name]:-}
        ours_ref=$(ratio "$o" "$r")
        printf '%-26s %-5s %10s %10s %10s %13s %15s\n' "$name" "$unit" \
            "$(fmt_num "$d")" "$(fmt_num "$o")" "$(ratio "$o" "$d")" "$(fmt_num "$r")" "$ours_ref"
    done
    local key
    for key in "${!NOTE[@]}"; do
        echo "  note: ${key/\// / }: ${NOTE[$key]}"
    done | sort

    echo
    echo "peak RSS (VmHWM) of the proxy process:"
    local t label
    for t in ours ref; do
        label="ours"
        [[ $t == ref ]] && label=$ref_label
        printf '  %-13s wrk rows: %s (plain %s, TLS %s); 100 MiB download (fresh process): %s\n' "$label" \
            "$(fmt_mib "$(max_kib "${RSS[$t/plain]:-}" "${RSS[$t/tls]:-}")")" \
            "$(fmt_mib "${RSS[$t/plain]:-}")" "$(fmt_mib "${RSS[$t/tls]:-}")" \
            "$(fmt_mib "${RSS[$t/big]:-}")"
    done

    echo
    echo "targets:"
    local small="plain 100 B keep-alive" tlska="TLS 100 B keep-alive"
    check "plain 100 B: ours/direct" "$(ratio "${RESULT[ours/$small]:-}" "${RESULT[direct/$small]:-}")" ">=" 0.35
    if [[ -n $REF_BIN ]]; then
        check "plain 100 B: ours/$ref_label" "$(ratio "${RESULT[ours/$small]:-}" "${RESULT[ref/$small]:-}")" ">=" 20
    else
        echo "  SKIP plain 100 B: ours/$ref_label ($ref_label not available)"
    fi
    check "TLS 100 B keep-alive: ours/direct" "$(ratio "${RESULT[ours/$tlska]:-}" "${RESULT[direct/$tlska]:-}")" ">=" 0.30
    local big_rss=""
    [[ -n ${RSS[ours/big]:-} ]] && big_rss=$(awk -v k="${RSS[ours/big]}" 'BEGIN { printf "%.1f", k / 1024 }')
    [[ -n ${RESULT[ours/$BIG_ROW]:-} ]] || big_rss=""   # download must have succeeded
    check "100 MiB download peak RSS (MiB)" "$big_rss" "<" 64
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
main() {
    LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
    if awk -v l="${LOAD_AT_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
        log "WARNING: load average is $LOAD_AT_START; other processes will skew the numbers"
    fi
    ensure_tools
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/mitm-bench.XXXXXX")
    chmod 755 "$TMP"
    mkdir -p "$OUT_DIR"
    : >"$TMP/wrk.log"

    build_ours
    setup_reference
    make_origin_files

    # 2 nginx ports + 3 proxy processes each for ours and the reference.
    local ports
    read -r -a ports <<<"$(free_ports 8)"
    NGINX_PORT=${ports[0]}
    NGINX_TLS=${ports[1]}
    PROXY_PORTS=("${ports[@]:2}")
    start_nginx

    log "measuring direct"
    measure_direct
    log "measuring ours"
    measure_proxy ours "$OURS_BIN" "$DURATION"
    log "measuring mitmdump $MITMPROXY_VERSION"
    measure_proxy ref "$REF_BIN" "$REF_DURATION"

    report >"$OUT_DIR/results.txt"   # not in a pipe: report sets FAILED
    if [[ -n $REF_BIN && -n $OURS_BIN && ${FLOWFILES:-1} == 1 ]]; then
        log "measuring flow files (FLOWFILES=0 skips)"
        OURS_BIN=$OURS_BIN REF_BIN=$REF_BIN bash "$(dirname "$0")/flowfiles.sh" >>"$OUT_DIR/results.txt" || FAILED=1
    fi
    if [[ -n $OURS_BIN && ${TCP:-1} == 1 ]]; then
        log "measuring raw TCP (TCP=0 skips)"
        OURS_BIN=$OURS_BIN bash "$(dirname "$0")/tcp.sh" >>"$OUT_DIR/results.txt" || FAILED=1
    fi
    if [[ -n $OURS_BIN && ${WEBSOCKET:-1} == 1 ]]; then
        log "measuring WebSocket echo (WEBSOCKET=0 skips)"
        OURS_BIN=$OURS_BIN REF_BIN=$REF_BIN bash "$(dirname "$0")/websocket.sh" >>"$OUT_DIR/results.txt" || FAILED=1
    fi
    cat "$OUT_DIR/results.txt"
    cp "$TMP/wrk.log" "$OUT_DIR/wrk.log"
    log "done in $((SECONDS - BENCH_START)) s; table in bench/out/results.txt, raw wrk output in bench/out/wrk.log"
    return "$FAILED"
}

main "$@"
