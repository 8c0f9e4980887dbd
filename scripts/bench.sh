#!/usr/bin/env bash
# Runs hookyard's benchmarks (see docs/benchmarks.md):
#   1. builds the example plugins (Rust, Python, JavaScript, C) into
#      plugins/dist/ (scripts/build-plugins.sh; installs their toolchains
#      on first use),
#   2. the plugin-call micro-benchmark with criterion (full runs only),
#   3. the load benchmark: release router + sink + load generator + bare
#      axum baseline, each in its own process, on 127.0.0.1.
# Prints Markdown tables; writes target/bench/results.json
# (target/bench/results-quick.json with --quick).
#
# Usage: scripts/bench.sh [--quick] [load bench options, e.g. --only ingest]
#        (from any directory; `cargo bench --bench load -- --help` lists them)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=false
for arg in "$@"; do
    [[ $arg == --quick ]] && quick=true
done

bash scripts/build-plugins.sh
if ! $quick; then
    # Criterion's estimates land in target/criterion; the load bench's
    # table quotes them.
    cargo bench --bench plugin_call
fi
cargo bench --bench load -- "$@"
