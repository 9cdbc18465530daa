#!/usr/bin/env bash
# Installs what the build and the tests need (Debian packages), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
    missing=()
    # iptables and iproute2: the transparent-mode test builds network namespaces (as root).
    for package in libbrotli-dev libzstd-dev curl openssl iptables iproute2; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi
python3 -c 'import requests' 2>/dev/null || python3 -m pip install -q requests || true
# websocket-client: the real WebSocket client of the WebSocket tests (cancelled without it).
python3 -c 'import websocket' 2>/dev/null || python3 -m pip install -q websocket-client || true
# h2: the HTTP/2 client of the RFC 8441 WebSocket test (cancelled without it).
python3 -c 'import h2' 2>/dev/null || python3 -m pip install -q h2 || true
# mitmproxy 11 itself, to check that it reads the files we write (those tests are cancelled without it).
timeout 600 bash scripts/mitmproxy-venv.sh || echo "mitmproxy 11 venv unavailable: its compatibility tests will be cancelled"
swift build --build-tests
swift test --skip-build --disable-xctest
