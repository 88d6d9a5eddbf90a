#!/usr/bin/env bash
# Usage: scripts/bootstrap.sh REQUIREMENTS_FILE
# Makes .venv (once) and installs REQUIREMENTS_FILE into it when it changed since last time.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="$1"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$(basename "$requirements")"
if [ ! -f "$stamp" ] || [ -n "$(find requirements -newer "$stamp" -name '*.txt')" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    touch "$stamp"
fi
