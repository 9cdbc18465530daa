#!/usr/bin/env bash
# Creates the Python venv with mitmproxy 11.0.2 that MitmIOTests' compatibility test uses to check
# that mitmproxy itself reads the flow files we write. Optional: without it, that test is skipped.
#
#   scripts/mitmproxy-venv.sh [VENV_DIR]     (default: .venv-mitmproxy-test in the package root)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv-mitmproxy-test}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import mitmproxy.version as v; assert v.VERSION == "11.0.2"' 2>/dev/null; then
    echo "mitmproxy 11.0.2 venv already at $venv"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "mitmproxy==11.0.2"
"$venv/bin/python" -c 'import mitmproxy.version as v; print("mitmproxy", v.VERSION, "in", "'"$venv"'")'
