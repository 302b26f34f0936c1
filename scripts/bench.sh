#!/usr/bin/env bash
# mongrove vs the raw driver vs Mongoose 9, one run against one throwaway server.
#   scripts/bench.sh                 full sizes, 7 rounds
#   scripts/bench.sh --smoke         small sizes, 3 rounds: seconds
#   scripts/bench.sh --write book/src/performance   also regenerate the guide's table and chart
#   scripts/bench.sh --runtime current-thread --write book/src/performance
#                                    the Rust sides on tokio's current-thread runtime (one thread,
#                                    as Node runs Mongoose), written next to the default run
# Other flags: --rounds N, --no-mongoose. MONGODB_URI picks a server; otherwise the test kit
# starts one (see the guide's "Running locally").
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " != *" --no-mongoose "* && ! -d benches/mongoose/node_modules/mongoose ]]; then
  # The lock file pins Mongoose and its dependencies; node_modules is never committed.
  (cd benches/mongoose && npm ci --no-audit --no-fund --silent)
fi
exec cargo bench --bench compare -- "$@"
