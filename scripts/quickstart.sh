#!/usr/bin/env bash
# Builds the example plugin and runs hookyard with the quickstart config.
# Usage: scripts/quickstart.sh   (then, in other terminals: the sink and
# examples/quickstart/send-events.sh; see examples/quickstart/README.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/build-plugins.sh rust
mkdir -p examples/quickstart/plugins
cp plugins/dist/quickstart-router.wasm examples/quickstart/plugins/.quickstart-router.wasm.tmp
mv -f examples/quickstart/plugins/.quickstart-router.wasm.tmp examples/quickstart/plugins/quickstart-router.wasm
# Not quiet: a first build compiles wasmtime (several minutes), and its
# progress is what the terminal shows meanwhile.
echo "building hookyard (the first build takes several minutes; later ones seconds)"
cargo build
exec cargo run --quiet -- serve --config examples/quickstart/hookyard.toml
