#!/usr/bin/env bash
# Builds the Rust guest plugins into WebAssembly components and copies them to
# plugins/dist/<name>.wasm, where hookyard's example configs expect them.
#
# Usage: scripts/build-plugins.sh   (from any directory)
set -euo pipefail

TARGET=wasm32-wasip2
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
workspace="$repo_root/plugins/rust"
dist="$repo_root/plugins/dist"

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

mkdir -p "$dist"
tmp=""
trap '[[ -z $tmp ]] || rm -f "$tmp"' EXIT
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
