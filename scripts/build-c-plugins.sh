#!/usr/bin/env bash
# Builds the C guest plugins (plugins/c/<name>/) into WebAssembly components
# and writes them to plugins/dist/<name>-c.wasm.
#
# Steps, each skipped when already done:
#   1. clang + wasm-ld + wasi-libc from Debian packages (apt-get, as root);
#   2. wit-bindgen-cli and wasm-tools, pinned, via `cargo install --locked`
#      into plugins/c/.tools (git-ignored);
#   3. the WASI preview1 reactor adapter, from the crates.io crate
#      wasi-preview1-component-adapter-provider (plugins/c/tools/wasi-adapter);
# then, per plugin:
#   4. `wit-bindgen c` generates plugin.h/plugin.c/plugin_component_type.o
#      from wit/ into plugins/c/<name>/gen/ (git-ignored);
#   5. clang --target=wasm32-wasi -O2 -mexec-model=reactor links a core module;
#   6. `wasm-tools component new --adapt` turns it into a component, which is
#      checked to import nothing but wasi:* and hookyard:plugin/*;
#   7. it is written to plugins/dist/ via a temp file + mv.
#
# Usage: scripts/build-c-plugins.sh   (from any directory)
# Env:   CLANG=<compiler>              (default: clang)
#        HOOKYARD_C_TOOLS=<dir>        (default: plugins/c/.tools)
set -euo pipefail

WIT_BINDGEN_VERSION=0.63.0 # C output matches the Rust guests' wit-bindgen 0.63.0
WASM_TOOLS_VERSION=1.262.0 # same wit-component (0.262) as wit-bindgen-cli 0.63.0
APT_PACKAGES=(clang lld wasi-libc libclang-rt-dev-wasm32)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
c_root="$repo_root/plugins/c"
wit_dir="$repo_root/wit"
dist="$repo_root/plugins/dist"
tools="${HOOKYARD_C_TOOLS:-$c_root/.tools}"
clang="${CLANG:-clang}"

mkdir -p "$tools" "$dist"
# One build at a time (tests and a developer may run this concurrently).
if command -v flock >/dev/null; then
    exec 9>"$tools/.lock"
    flock 9
fi

work="$(mktemp -d)"
tmp=""
trap 'rm -rf "$work"; [[ -z $tmp ]] || rm -f "$tmp"' EXIT

# --- 1. C toolchain -----------------------------------------------------------
# Probe by building a tiny reactor module: that needs clang's wasm32 target,
# wasm-ld, wasi-libc's crt1-reactor.o/libc.a and compiler-rt's wasm32 builtins.
probe_clang() {
    printf 'int hookyard_probe(void) { return 0; }\n' >"$work/probe.c"
    "$clang" --target=wasm32-wasi -O2 -mexec-model=reactor \
        -o "$work/probe.wasm" "$work/probe.c" >"$work/probe.log" 2>&1
}
if ! probe_clang; then
    if [[ -n ${CLANG:-} ]]; then
        echo "error: CLANG=$clang cannot build for wasm32-wasi:" >&2
        cat "$work/probe.log" >&2
        exit 1
    fi
    echo "installing Debian packages: ${APT_PACKAGES[*]}"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "error: need root for: apt-get install ${APT_PACKAGES[*]}" >&2
            exit 1
        fi
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
        --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
    if ! probe_clang; then
        echo "error: clang still cannot build for wasm32-wasi:" >&2
        cat "$work/probe.log" >&2
        exit 1
    fi
fi

# --- 2. wit-bindgen and wasm-tools ---------------------------------------------
# Only the features used are built, which roughly halves the compile time.
install_tool() { # crate version binary features
    local crate=$1 version=$2 bin=$3 features=$4
    if [[ "$("$tools/bin/$bin" --version 2>/dev/null)" == *" $version" ]]; then
        return
    fi
    echo "installing $crate $version into $tools (cargo install, takes minutes)"
    cargo install --quiet --locked --force --root "$tools" --version "$version" \
        --no-default-features --features "$features" "$crate"
}
install_tool wit-bindgen-cli "$WIT_BINDGEN_VERSION" wit-bindgen c
install_tool wasm-tools "$WASM_TOOLS_VERSION" wasm-tools component,validate,print
wit_bindgen="$tools/bin/wit-bindgen"
wasm_tools="$tools/bin/wasm-tools"

# --- 3. WASI preview1 reactor adapter -------------------------------------------
# The adapter crate is pinned to the host's wasmtime version in its Cargo.toml;
# cargo only rebuilds the little helper when that changes.
adapter="$tools/wasi_snapshot_preview1.reactor.wasm"
cargo run --quiet --release --locked \
    --manifest-path "$c_root/tools/wasi-adapter/Cargo.toml" -- "$adapter"

# --- 4-7. the plugins ----------------------------------------------------------
built_any=0
for plugin_dir in "$c_root"/*/; do
    plugin_dir="${plugin_dir%/}"
    name="$(basename "$plugin_dir")"
    [[ $name == tools ]] && continue
    compgen -G "$plugin_dir/*.c" >/dev/null || continue
    gen="$plugin_dir/gen"

    # 4. bindings, regenerated every build (they are cheap and must follow wit/).
    rm -rf "$gen"
    mkdir -p "$gen"
    if ! "$wit_bindgen" c --world plugin --out-dir "$gen" "$wit_dir" >"$work/wit-bindgen.log" 2>&1; then
        cat "$work/wit-bindgen.log" >&2
        exit 1
    fi

    # 5. core module. The reactor model exports `_initialize` (C constructors),
    #    which the component runs once at instantiation. Debug info is dropped;
    #    the component-type custom section is kept.
    core="$gen/$name.core.wasm"
    "$clang" --target=wasm32-wasi -O2 -mexec-model=reactor -std=c11 \
        -Wall -Wextra -Werror -Wno-unused-parameter \
        -I "$gen" -Wl,--strip-debug \
        -o "$core" "$plugin_dir"/*.c "$gen/plugin.c" "$gen/plugin_component_type.o"

    # 6. component. Unused adapter imports are left out, so a plugin that never
    #    touches WASI (like chat-router) ends up importing only hookyard's host.
    component="$gen/$name.component.wasm"
    "$wasm_tools" component new "$core" \
        --adapt "wasi_snapshot_preview1=$adapter" -o "$component"
    "$wasm_tools" validate "$component"
    imports="$("$wasm_tools" component wit "$component" |
        sed -n 's/^ *import \([^;]*\);.*/\1/p')"
    unexpected="$(grep -v -e '^wasi:' -e '^hookyard:plugin/' <<<"$imports" || true)"
    if [[ -n $unexpected ]]; then
        echo "error: $name imports something hookyard does not provide:" >&2
        echo "$unexpected" >&2
        exit 1
    fi

    # 7. publish atomically, so a running hookyard never loads a half-written
    #    file; an unchanged component is left alone (the build is
    #    deterministic), so a hookyard watching plugins/dist does not reload.
    dest="$dist/$name-c.wasm"
    if ! cmp -s "$component" "$dest"; then
        tmp="$(mktemp "$dist/.$name-c.wasm.XXXXXX")"
        cp "$component" "$tmp"
        chmod 644 "$tmp"
        mv -f "$tmp" "$dest"
        tmp=""
    fi
    built_any=1
    echo "built $dest ($(wc -c <"$dest") bytes; imports: $(tr '\n' ' ' <<<"$imports"))"
done

if [[ $built_any -eq 0 ]]; then
    echo "error: no C plugins found under $c_root" >&2
    exit 1
fi
