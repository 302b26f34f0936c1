#!/usr/bin/env bash
# Installs the pinned mdBook into .tools/ (once; later runs reuse it).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.5.4
bin=.tools/bin/mdbook
if [[ -x $bin ]] && [[ "$($bin --version)" == "mdbook v$version" ]]; then
    exit 0
fi
cargo install mdbook --version "$version" --locked --no-default-features --features search \
    --root .tools --target-dir .tools/target --quiet
rm -rf .tools/target
