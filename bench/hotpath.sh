#!/usr/bin/env bash
# Transpile src/ and bench/ to plain JS (esbuild, no keepNames: like tsc's dist/) and run the
# hot-path bench on it. Options are passed on (see bench/hotpath.bench.ts). OUT: build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/hotpath.XXXXXX)}
npx esbuild --log-level=warning --format=esm --platform=node --target=node20 --outbase=. --outdir="$OUT" \
  $(find src bench -name '*.ts' ! -name '*.d.ts')
echo '{"type":"module"}' > "$OUT/package.json"
ln -sfn "$PWD/node_modules" "$OUT/node_modules"
exec node --expose-gc "$OUT/bench/hotpath.bench.js" "$@"
