#!/usr/bin/env bash
# Runs the whole test suite: installs the toolchain pieces it needs, builds
# every example plugin from source, then runs the unit and integration tests
# (which start the real binary against a real HTTP sink on 127.0.0.1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The PostgreSQL store tests start throwaway servers with scripts/pg.sh, and
# the dashboard tests drive Debian's Chromium through chromedriver; a
# missing one fails its tests (in CI that must not turn into a skip), so
# install them first. Debian/Ubuntu keep initdb in /usr/lib/postgresql/*/bin.
sudo=()
if [[ $(id -u) != 0 ]] && command -v sudo >/dev/null; then sudo=(sudo); fi
# `env` inside sudo: sudo would drop DEBIAN_FRONTEND from the environment.
apt() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
install() {
    echo "installing Debian packages: $* (${sudo[*]:+sudo }apt-get install -y)"
    if ! apt install -y "$@"; then
        echo "install failed; retrying after apt-get update"
        apt update
        apt install -y "$@"
    fi
}
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ((${#missing[@]})); then install "${missing[@]}"; fi

bash scripts/build-plugins.sh
cargo test --all-targets "$@"
