#!/usr/bin/env bash
# Builds the guest plugins into WebAssembly components in plugins/dist/, where
# hookyard's example configs and the tests expect them:
#   Rust        plugins/rust/<name>/          -> plugins/dist/<name>.wasm
#   Python      plugins/python/<name>/app.py  -> plugins/dist/<name>-python.wasm
#   JavaScript  plugins/js/<name>/<name>.js   -> plugins/dist/<name>-js.wasm
#   C           plugins/c/<name>/*.c          -> plugins/dist/<name>-c.wasm
# The Python and JavaScript toolchains are installed on first use (a venv in
# plugins/python/.venv, `npm ci` in plugins/js) and reinstalled only when
# their pinned versions change; a component is rebuilt only when its inputs
# (source, WIT, pinned toolchain, this script) change.
#
# Needs: rustup/cargo, python3 (3.9+, with venv), node (20+) and npm.
#
# Usage: scripts/build-plugins.sh [rust] [python] [js] [c]   (default: all;
# from any directory)
set -euo pipefail

langs=" ${*:-rust python js c} "
wanted() { [[ $langs == *" $1 "* ]]; }

TARGET=wasm32-wasip2
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
workspace="$repo_root/plugins/rust"
dist="$repo_root/plugins/dist"

mkdir -p "$dist"
tmp=""
trap '[[ -z $tmp ]] || rm -f "$tmp"' EXIT

if wanted rust; then
# wasm32-wasip2 makes rustc emit a component directly, so no other tools are needed.
installed_targets="$(rustup target list --installed)"
if ! grep -qx "$TARGET" <<<"$installed_targets"; then
    echo "installing rust target $TARGET"
    rustup target add "$TARGET"
fi

cargo build --release --target "$TARGET" --manifest-path "$workspace/Cargo.toml"

# Ask cargo where the artifacts are instead of assuming target/ (CARGO_TARGET_DIR
# may point elsewhere).
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$workspace/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
out="$target_dir/$TARGET/release"

for crate_dir in "$workspace"/*/; do
    [[ -f "$crate_dir/Cargo.toml" ]] || continue
    name="$(basename "$crate_dir")"
    # cargo names the artifact after the lib name (hyphens become underscores).
    built="$out/${name//-/_}.wasm"
    if [[ ! -f "$built" ]]; then
        echo "error: $built was not built" >&2
        exit 1
    fi
    dest="$dist/$name.wasm"
    # Copy then rename so a running hookyard never loads a half-written file.
    tmp="$(mktemp "$dist/.$name.wasm.XXXXXX")"
    cp "$built" "$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$dest"
    tmp=""
    echo "built $dest ($(wc -c <"$dest") bytes)"
done
fi

# ---------------------------------------------------------------------------
# Python and JavaScript plugins.

# Serialise concurrent runs (test processes each run this script): npm ci and
# pip must not run twice at once over the same directory.
if command -v flock >/dev/null; then
    exec 9>"$dist/.build.lock"
    flock 9
fi

# One hash over the names and contents of the given files and directories
# (relative to the repo, so it does not depend on where the clone lives).
inputs_hash() {
    (cd "$repo_root" &&
        find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# up_to_date DEST HASH: whether DEST exists and was built from inputs HASH.
up_to_date() {
    [[ -f $1 && "$(cat "$(stamp_of "$1")" 2>/dev/null)" == "$2" ]]
}
stamp_of() { echo "$(dirname "$1")/.$(basename "$1").inputs"; }

need() {
    if ! command -v "$1" >/dev/null; then
        echo "error: $1 is needed to build the $2 plugins (see docs/plugins-$2.md)" >&2
        exit 1
    fi
}

# --- Python: componentize-py, pinned in plugins/python/requirements.txt.
if wanted python; then
python_dir="$repo_root/plugins/python"
venv="$python_dir/.venv"
need python3 python
want="$(sha256sum "$python_dir/requirements.txt" | cut -d' ' -f1)"
if [[ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]] ||
    ! "$venv/bin/componentize-py" --version >/dev/null 2>&1; then
    echo "installing the Python plugin toolchain into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$python_dir/requirements.txt"
    echo "$want" >"$venv/.requirements.sha256"
fi

for plugin_dir in "$python_dir"/*/; do
    [[ -f "$plugin_dir/app.py" ]] || continue
    name="$(basename "$plugin_dir")"
    dest="$dist/$name-python.wasm"
    hash="$(inputs_hash "plugins/python/$name" plugins/python/requirements.txt wit scripts/build-plugins.sh)"
    if up_to_date "$dest" "$hash"; then
        echo "up to date $dest"
        continue
    fi
    tmp="$(mktemp "$dist/.$name-python.wasm.XXXXXX")"
    # `app` is the module in the plugin's directory that defines `WitWorld`.
    "$venv/bin/componentize-py" --quiet -d "$repo_root/wit" -w plugin \
        componentize -p "${plugin_dir%/}" app -o "$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$dest"
    tmp=""
    echo "$hash" >"$(stamp_of "$dest")"
    echo "built $dest ($(wc -c <"$dest") bytes)"
done

fi

# --- JavaScript: ComponentizeJS, pinned in plugins/js/package-lock.json.
if wanted js; then
js_dir="$repo_root/plugins/js"
need node javascript
need npm javascript
want="$(sha256sum "$js_dir/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$js_dir/node_modules/.hookyard-lock.sha256" 2>/dev/null)" != "$want" ]]; then
    echo "installing the JavaScript plugin toolchain (npm ci in $js_dir)"
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$js_dir/node_modules/.hookyard-lock.sha256"
fi

for plugin_dir in "$js_dir"/*/; do
    name="$(basename "$plugin_dir")"
    [[ $name != node_modules && -f "$plugin_dir/$name.js" ]] || continue
    dest="$dist/$name-js.wasm"
    hash="$(inputs_hash "plugins/js/$name" plugins/js/package-lock.json plugins/js/componentize.mjs wit scripts/build-plugins.sh)"
    if up_to_date "$dest" "$hash"; then
        echo "up to date $dest"
        continue
    fi
    tmp="$(mktemp "$dist/.$name-js.wasm.XXXXXX")"
    node "$js_dir/componentize.mjs" "${plugin_dir%/}/$name.js" "$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$dest"
    tmp=""
    echo "$hash" >"$(stamp_of "$dest")"
    echo "built $dest ($(wc -c <"$dest") bytes)"
done
fi

# --- C: clang + wasi-libc, wit-bindgen's C generator, wasm-tools (its own
# script: it installs pinned tools on first use).
if wanted c; then
    bash "$repo_root/scripts/build-c-plugins.sh"
fi
