#!/usr/bin/env bash
# Installs the build's Debian packages if missing, builds mitmdump in release mode and runs it
# with the given arguments (by default an HTTP(S) proxy on port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
    missing=()
    for package in libbrotli-dev libzstd-dev; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi
swift build -c release --product mitmdump
exec "$(swift build -c release --show-bin-path)/mitmdump" "$@"
