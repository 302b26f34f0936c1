#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the browser test of the live-orders page
# (tests/integration/live_orders.rs), unless it is already there. Prints the binary's path.
set -euo pipefail
for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        exit 0
    fi
done
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
