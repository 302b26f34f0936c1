#!/usr/bin/env bash
# Installs the pinned mdBook (once per machine) and prints the path of its binary.
# The cache lives outside the checkout, so fresh clones on the same machine reuse it.
set -euo pipefail
version=0.5.4
root=${MONGROVE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/mongrove/tools}
bin=$root/bin/mdbook
if [[ ! -x $bin ]] || [[ "$("$bin" --version)" != "mdbook v$version" ]]; then
    cargo install mdbook --version "$version" --locked --no-default-features --features search \
        --root "$root" --target-dir "$root/target" --quiet >&2
    rm -rf "$root/target"
fi
echo "$bin"
