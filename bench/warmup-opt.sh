#!/usr/bin/env bash
# bench/WARMUP.md: TurboFan optimisations ("completed optimizing" of --trace-opt) during the first
# call load after start, per warm-up setting; RUNS runs each (default 3), LOAD calls (default 2000).
#   bash bench/warmup-opt.sh ["REGISTERS CALLS MAX_MS" ...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
LOAD=${LOAD:-2000}
[ $# -gt 0 ] || set -- "0 0 0" "20 50 1000" "100 200 1000" "100 500 1000" "100 1000 3000" "100 2000 6000"
out=$(mktemp)
for setting in "$@"; do
  for run in $(seq "$RUNS"); do
    # shellcheck disable=SC2086
    stdbuf -o0 node --trace-opt --import tsx bench/warmup-opt.ts $setting "$LOAD" > "$out" 2>&1
    during=$(awk '/^MARK-START/{on=1} /^MARK-END/{on=0} on && /completed optimizing/{n++} END{print n+0}' "$out")
    before=$(awk '/^MARK-START/{exit} /completed optimizing/{n++} END{print n+0}' "$out")
    echo "warmup=[$setting] run=$run optBeforeLoad=$before optDuringLoad=$during $(grep '^RESULT' "$out" | cut -c8-)"
  done
done
rm -f "$out"
