#!/usr/bin/env bash
# Builds {{name}}.wasm (a WebAssembly component) next to this script with
# ComponentizeJS (npm install on first use). Set HOOKYARD_JS_MODULES to a
# node_modules directory that already has @bytecodealliance/componentize-js
# to reuse it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ ! -e node_modules ]]; then
    if [[ -n ${HOOKYARD_JS_MODULES:-} ]]; then
        ln -s "$HOOKYARD_JS_MODULES" node_modules
    else
        npm install --no-audit --no-fund --loglevel=error
    fi
fi
node componentize.mjs
echo "built $(pwd)/{{name}}.wasm"
