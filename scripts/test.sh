#!/usr/bin/env bash
# Install Qiantang with its test tools, then run lint, types and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[dev,edge]'
# tests/e2e/test_sparkplug.py drives a pysparkplug edge node; pysparkplug pins paho-mqtt < 2,
# so it gets a virtual environment of its own
SPARKPLUG_VENV="${QIANTANG_SPARKPLUG_VENV:-$HOME/.cache/qiantang/sparkplug-venv}"
[ -x "$SPARKPLUG_VENV/bin/python" ] || python3 -m venv "$SPARKPLUG_VENV"
"$SPARKPLUG_VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'pysparkplug==0.6.1'
export QIANTANG_SPARKPLUG_VENV="$SPARKPLUG_VENV"
# The browser tests drive Debian's Chromium (never `playwright install`: it downloads a browser);
# the CJK font makes Chinese readable in their screenshots.
if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi "noto.*cjk"; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-cjk
fi
python3 -m ruff check src tests bench
python3 -m ruff format --check src tests bench
python3 -m mypy
python3 -m pytest -q "$@"
