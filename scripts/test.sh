#!/usr/bin/env bash
# Runs the whole test suite: installs the toolchain pieces it needs, builds
# every example plugin from source, then runs the unit and integration tests
# (which start the real binary against a real HTTP sink on 127.0.0.1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The PostgreSQL store tests start throwaway servers with scripts/pg.sh; a
# missing PostgreSQL fails them (in CI it must not turn into a skip), so
# install it first. Debian/Ubuntu keep initdb in /usr/lib/postgresql/*/bin.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    sudo=()
    if [[ $(id -u) != 0 ]] && command -v sudo >/dev/null; then sudo=(sudo); fi
    # `env` inside sudo: sudo would drop DEBIAN_FRONTEND from the environment.
    apt() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
    echo "PostgreSQL not found: ${sudo[*]:+sudo }apt-get install -y postgresql"
    if ! apt install -y postgresql; then
        echo "install failed; retrying after apt-get update"
        apt update
        apt install -y postgresql
    fi
fi

bash scripts/build-plugins.sh
cargo test --all-targets "$@"
