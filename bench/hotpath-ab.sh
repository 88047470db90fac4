#!/usr/bin/env bash
# A/B the hot-path bench across commits on a busy machine: every variant is src/ of its commit with
# the CURRENT bench/ (and src/core/random.ts, which older commits lack), transpiled once; then the
# variants run round-robin REPS times (default 5), so load changes hit them alike. Compare the min
# and the median of the runs' CPU figures, and the heap bytes/op.
#
#   bash bench/hotpath-ab.sh base=main:--no-pool head=HEAD
#
# A variant is name=commit[:bench flags]; use --no-pool for commits whose server.ts did not use
# src/core/random.ts (before it existed). Results: $ROOT/results.txt (default /tmp/hotpath-ab).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
ROOT=${ROOT:-/tmp/hotpath-ab}
rm -rf "$ROOT"
mkdir -p "$ROOT"
names=()
for spec in "$@"; do
  name=${spec%%=*}
  rest=${spec#*=}
  commit=${rest%%:*}
  flags=""
  [[ $rest == *:* ]] && flags=${rest#*:}
  d=$ROOT/$name
  mkdir -p "$d"
  git archive "$commit" src | tar -x -C "$d"
  git ls-files bench src/core/random.ts | tar -c -T - | tar -x -C "$d"
  npx esbuild --log-level=warning --format=esm --platform=node --target=node20 --outbase="$d" --outdir="$d/out" \
    $(find "$d/src" "$d/bench" -name '*.ts' ! -name '*.d.ts')
  echo '{"type":"module"}' > "$d/out/package.json"
  ln -sfn "$PWD/node_modules" "$d/out/node_modules"
  echo "$flags" > "$d/flags"
  names+=("$name")
done
for r in $(seq 1 "$REPS"); do
  for v in "${names[@]}"; do
    # shellcheck disable=SC2046
    node --expose-gc "$ROOT/$v/out/bench/hotpath.bench.js" --rounds 6 $(cat "$ROOT/$v/flags") 2>&1 |
      grep -E '^(register|call) ' | sed "s/^/$v rep$r /" | tee -a "$ROOT/results.txt"
  done
done
