#!/usr/bin/env bash
# Runs the whole test suite: installs the toolchain pieces it needs, builds
# every example plugin from source, then runs the unit and integration tests
# (which start the real binary against a real HTTP sink on 127.0.0.1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/build-plugins.sh
cargo test --all-targets "$@"
