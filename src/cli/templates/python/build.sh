#!/usr/bin/env bash
# Builds {{name}}.wasm (a WebAssembly component) next to this script with
# componentize-py, installed into ./.venv on first use. Set HOOKYARD_PY_VENV
# to reuse an existing virtualenv that has componentize-py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
venv="${HOOKYARD_PY_VENV:-.venv}"
if ! "$venv/bin/componentize-py" --version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
fi
"$venv/bin/componentize-py" --quiet -d wit -w plugin componentize -p . app -o "{{name}}.wasm"
echo "built $(pwd)/{{name}}.wasm"
