#!/usr/bin/env bash
# Builds {{name}}.wasm (a WebAssembly component) next to this script:
# wit-bindgen's C generator -> clang (wasm32-wasi, reactor) -> wasm-tools
# component new with the WASI preview1 reactor adapter.
# Needs clang + lld + wasi-libc (Debian: clang lld wasi-libc
# libclang-rt-dev-wasm32). Tools come from HOOKYARD_C_TOOLS (a directory with
# bin/wit-bindgen, bin/wasm-tools and wasi_snapshot_preview1.reactor.wasm, as
# hookyard's scripts/build-c-plugins.sh leaves in plugins/c/.tools), else they
# are installed into ./.tools with cargo (takes minutes, once).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tools="${HOOKYARD_C_TOOLS:-.tools}"
if [[ ! -x $tools/bin/wit-bindgen ]]; then
    cargo install --quiet --locked --root "$tools" --version 0.63.0 \
        --no-default-features --features c wit-bindgen-cli
fi
if [[ ! -x $tools/bin/wasm-tools ]]; then
    cargo install --quiet --locked --root "$tools" --version 1.262.0 \
        --no-default-features --features component,validate wasm-tools
fi
adapter="$tools/wasi_snapshot_preview1.reactor.wasm"
if [[ ! -f $adapter ]]; then
    cargo run --quiet --release --manifest-path tools/wasi-adapter/Cargo.toml -- "$adapter"
fi
rm -rf gen && mkdir gen
"$tools/bin/wit-bindgen" c --world plugin --out-dir gen wit
"${CLANG:-clang}" --target=wasm32-wasi -O2 -mexec-model=reactor -std=c11 -Wall -Wextra \
    -I gen -Wl,--strip-debug -o gen/core.wasm \
    plugin.c gen/plugin.c gen/plugin_component_type.o
"$tools/bin/wasm-tools" component new gen/core.wasm \
    --adapt "wasi_snapshot_preview1=$adapter" -o "{{name}}.wasm"
echo "built $(pwd)/{{name}}.wasm"
