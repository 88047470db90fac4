#!/usr/bin/env bash
# floor, sipd and stock Kamailio 5.6 back to back in one session: the same
# scenarios, users, pinning and step rates (every run is bench/sipp/load.sh),
# then both servers' tables and the ratios.
#
#   bench/sipp/compare.sh                       # OUT=/tmp/sipd-compare-TIME
#   OUT=/tmp/cmp REG_RATES="2000 4000 8000" CALL_RATES="500 1000" bench/sipp/compare.sh
#
# Runs, in this order (each a fresh server; logs in $OUT/NAME.log, results in $OUT/NAME/):
#   1. kamailio       REGISTER and call steps
#   2. sipd           REGISTER and call steps (builds sipd once: npm run --silent build)
#   then the half rates: half of Kamailio's highest passing REGISTER and call
#   rates (pass = 0 failed and < 1 % retransmissions; SOAK_REG_RATE /
#   SOAK_CALL_RATE override them; when Kamailio passed no step, half of the
#   lowest step rate)
#   3. floor          REGISTER steps + REGISTER soak at the half rate (floor.mjs)
#   4. kamailio-soak  REGISTER soak, then call soak, at the half rates
#   5. sipd-soak      the same for sipd
# A soak is SOAK_S s of load, then SOAK_AFTER_S s idle, RSS every SOAK_SAMPLE_S s.
#
# Environment (defaults): REG_RATES="1000 2000 4000 6000 8000 10000"
# CALL_RATES="250 500 1000 2000 2500" STEP_S=10 USERS=2000 CALL_D_MS=20
# UAS_RING_MS=0 OTHER_MAX=15 STOP_AFTER_FAIL=1 (a phase stops at its first
# step that does not pass; 0 runs every rate) SOAK_S=60 SOAK_AFTER_S=40
# SOAK_SAMPLE_S=5 SOAK_REG_RATE= SOAK_CALL_RATE= FLOOR_REG_RATES=$REG_RATES,
# plus anything load.sh reads (ports, SIPD_CMD, SIPD_DBNAME, ...).
# With the defaults the whole run takes about 18-25 minutes (a step that
# overloads the server can take up to 3*STEP_S+30 s, an overloaded soak SOAK_S+60 s).
#
# Output: $OUT/summary.md (commands, git HEAD, tables, ratio lines), $OUT/ratios.txt.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-/tmp/sipd-compare-$(date +%Y%m%d-%H%M%S)}
REG_RATES=${REG_RATES-"1000 2000 4000 6000 8000 10000"}
CALL_RATES=${CALL_RATES-"250 500 1000 2000 2500"}
STEP_S=${STEP_S:-10}
USERS=${USERS:-2000}
CALL_D_MS=${CALL_D_MS:-20}
UAS_RING_MS=${UAS_RING_MS:-0}
OTHER_MAX=${OTHER_MAX:-15}
STOP_AFTER_FAIL=${STOP_AFTER_FAIL:-1}
SOAK_S=${SOAK_S:-60}
SOAK_AFTER_S=${SOAK_AFTER_S:-40}
SOAK_SAMPLE_S=${SOAK_SAMPLE_S:-5}
FLOOR_REG_RATES=${FLOOR_REG_RATES-$REG_RATES}
HALF_REG_SET=${SOAK_REG_RATE:-}
HALF_CALL_SET=${SOAK_CALL_RATE:-}
# every load.sh setting that is set goes explicitly into each command line (printed as run)
COMMON=()
for v in REG_RATES CALL_RATES STEP_S USERS CALL_D_MS UAS_RING_MS CALL_SCENARIO OTHER_MAX STOP_AFTER_FAIL SOAK_S SOAK_AFTER_S SOAK_SAMPLE_S \
         SIPD_PORT SIPD_MPORT SIPD_DBNAME SIPD_DOMAIN SIPD_CMD SIPD_LOG_LEVEL KAM_PORT KAM_DOMAIN KAM_DIR \
         FLOOR_PORT FLOOR_DOMAIN REG_PORT UAC_PORT UAS_PORT; do
  [ -z "${!v+x}" ] || COMMON+=("$v=${!v}")
done
unset SOAK_REG_RATE SOAK_CALL_RATE

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
HEAD=$(git -C "$REPO" rev-parse HEAD)
T0=$(date +%s)
: >"$OUT/commands.txt"
FAILED_RUNS=()

# run NAME VAR=VALUE...: TARGET etc. given as arguments; load.sh output to $OUT/NAME.log
run() {
  local name=$1 rc=0 t0 cmd; shift
  t0=$(date +%s)
  cmd=$(printf '%q ' env "${COMMON[@]}" "$@" "OUT=$OUT/$name")"bench/sipp/load.sh"
  echo "$cmd" >>"$OUT/commands.txt"
  echo "== $(date -u +%H:%M:%S) $name: $cmd"
  (cd "$REPO" && env "${COMMON[@]}" "$@" "OUT=$OUT/$name" bench/sipp/load.sh) >"$OUT/$name.log" 2>&1 || rc=$?
  echo "   $name: exit $rc after $(($(date +%s) - t0)) s (log $OUT/$name.log)"
  if [ "$rc" != 0 ]; then FAILED_RUNS+=("$name (exit $rc)"); tail -5 "$OUT/$name.log" | sed 's/^/   | /'; fi
}

# highest passing target rate of PHASE in DIR/steps.tsv (last attempt of each rate), or n/a
best_rate() { # DIR PHASE
  [ -s "$1/steps.tsv" ] || { echo n/a; return; }
  awk -F'\t' -v ph="$2" 'NR > 1 && $1 == ph { row[$2] = $0 }
    END { b = 0; for (r in row) { split(row[r], f, "\t"); if (f[5] == 0 && f[7] < 1 && r + 0 > b) b = r + 0 }
          print (b ? b : "n/a") }' "$1/steps.tsv"
}
# column COL (by header name) of phase PHASE in DIR/soak.tsv, or n/a
soak_val() { # DIR PHASE COL
  [ -s "$1/soak.tsv" ] || { echo n/a; return; }
  awk -F'\t' -v ph="$2" -v col="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
    $1 == ph && c { v = $c } END { print (v == "" || v == "NA") ? "n/a" : v }' "$1/soak.tsv"
}
ratio() { # A B: A/B with 2 decimals, or n/a
  awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'
}
mb() { awk -v k="$1" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.0f MB\n", k / 1024; else print "n/a" }'; }
ms() { awk -v s="$1" 'BEGIN { if (s ~ /^[0-9.eE+-]+$/) printf "%.1f ms\n", s * 1000; else print "n/a" }'; }
half() { # BEST FALLBACK_RATES
  if [ "$1" != n/a ]; then echo $(($1 / 2 > 0 ? $1 / 2 : 1)); return; fi
  local lo
  # shellcheck disable=SC2086
  lo=$(printf '%s\n' $2 | sort -n | head -1)
  echo $((lo / 2 > 0 ? lo / 2 : 1))
}

{
  echo "compare.sh: $(date -u)"
  echo "git rev-parse HEAD: $HEAD ($(git -C "$REPO" status --porcelain --untracked-files=no | wc -l) modified tracked files)"
  echo "uptime: $(uptime)"
  echo "REG_RATES=\"$REG_RATES\" CALL_RATES=\"$CALL_RATES\" STEP_S=$STEP_S USERS=$USERS CALL_D_MS=$CALL_D_MS UAS_RING_MS=$UAS_RING_MS STOP_AFTER_FAIL=$STOP_AFTER_FAIL SOAK_S=$SOAK_S SOAK_AFTER_S=$SOAK_AFTER_S"
} | tee "$OUT/env.txt"

run kamailio TARGET=kamailio
run sipd TARGET=sipd SIPD_BUILD=1

KAM_REG=$(best_rate "$OUT/kamailio" reg); KAM_CALL=$(best_rate "$OUT/kamailio" call)
SIPD_REG=$(best_rate "$OUT/sipd" reg); SIPD_CALL=$(best_rate "$OUT/sipd" call)
HALF_REG=${HALF_REG_SET:-$(half "$KAM_REG" "$REG_RATES")}
HALF_CALL=${HALF_CALL_SET:-$(half "$KAM_CALL" "$CALL_RATES")}
echo "Kamailio highest passing rates: REGISTER $KAM_REG/s, calls $KAM_CALL/s -> soak at REGISTER $HALF_REG/s, calls $HALF_CALL/s"

run floor TARGET=floor "REG_RATES=$FLOOR_REG_RATES" CALL_RATES= "SOAK_REG_RATE=$HALF_REG"
run kamailio-soak TARGET=kamailio REG_RATES= CALL_RATES= "SOAK_REG_RATE=$HALF_REG" "SOAK_CALL_RATE=$HALF_CALL"
run sipd-soak TARGET=sipd SIPD_BUILD=0 REG_RATES= CALL_RATES= "SOAK_REG_RATE=$HALF_REG" "SOAK_CALL_RATE=$HALF_CALL"

# ---------------------------------------------------------------- ratios
K=$OUT/kamailio-soak S=$OUT/sipd-soak F=$OUT/floor
sv() { soak_val "$@"; }
{
  echo "## Ratios (sipd / Kamailio unless stated; one session, same machine, same pinning)"
  echo
  echo "- REGISTER, highest passing rate (0 failed, < 1 % retransmissions): sipd $SIPD_REG / Kamailio $KAM_REG per s = $(ratio "$SIPD_REG" "$KAM_REG")"
  echo "- calls, highest passing rate: sipd $SIPD_CALL / Kamailio $KAM_CALL per s = $(ratio "$SIPD_CALL" "$KAM_CALL")"
  for p in reg call; do
    if [ $p = reg ]; then what=REGISTER; r=$HALF_REG; else what=calls; r=$HALF_CALL; fi
    echo "- CPU µs/op at half of Kamailio's max, $what $r/s for ${SOAK_S} s: server sipd $(sv "$S" soak-$p us_per_op_server) / Kamailio $(sv "$K" soak-$p us_per_op_server) = $(ratio "$(sv "$S" soak-$p us_per_op_server)" "$(sv "$K" soak-$p us_per_op_server)"); server+MariaDB sipd $(sv "$S" soak-$p us_per_op_total) / Kamailio $(sv "$K" soak-$p us_per_op_total) = $(ratio "$(sv "$S" soak-$p us_per_op_total)" "$(sv "$K" soak-$p us_per_op_total)") (ok/failed: sipd $(sv "$S" soak-$p successful)/$(sv "$S" soak-$p failed), Kamailio $(sv "$K" soak-$p successful)/$(sv "$K" soak-$p failed))"
  done
  echo "- sipd REGISTER µs/op (server) at $HALF_REG/s as a multiple of the floor's: $(sv "$S" soak-reg us_per_op_server) / $(sv "$F" soak-reg us_per_op_server) = $(ratio "$(sv "$S" soak-reg us_per_op_server)" "$(sv "$F" soak-reg us_per_op_server)")× (Kamailio: $(ratio "$(sv "$K" soak-reg us_per_op_server)" "$(sv "$F" soak-reg us_per_op_server)")×)"
  echo "- p99 REGISTER+auth→200 at $HALF_REG/s: sipd $(sv "$S" soak-reg rtt_p99_ms) ms, Kamailio $(sv "$K" soak-reg rtt_p99_ms) ms, floor $(sv "$F" soak-reg rtt_p99_ms) ms (max: $(sv "$S" soak-reg rtt_max_ms) / $(sv "$K" soak-reg rtt_max_ms) / $(sv "$F" soak-reg rtt_max_ms) ms; SIPp resolution ~4 ms)"
  echo "- p99 INVITE+auth→200 at $HALF_CALL/s: sipd $(sv "$S" soak-call rtt_p99_ms) ms, Kamailio $(sv "$K" soak-call rtt_p99_ms) ms (max: $(sv "$S" soak-call rtt_max_ms) / $(sv "$K" soak-call rtt_max_ms) ms)"
  for p in reg call; do
    if [ $p = reg ]; then what="REGISTER $HALF_REG/s"; else what="calls $HALF_CALL/s"; fi
    echo "- sipd RSS, $what: $(mb "$(sv "$S" soak-$p rss_before_kb)") before, $(mb "$(sv "$S" soak-$p rss_load_end_kb)") after ${SOAK_S} s of load, $(mb "$(sv "$S" soak-$p rss_after_idle_kb)") ${SOAK_AFTER_S} s after the load stopped (Kamailio main process: $(mb "$(sv "$K" soak-$p rss_load_end_kb)") / $(mb "$(sv "$K" soak-$p rss_after_idle_kb)"))"
  done
  for p in reg call; do
    if [ $p = reg ]; then what="REGISTER $HALF_REG/s"; else what="calls $HALF_CALL/s"; fi
    echo "- sipd event-loop delay during the $what soak: p99 $(ms "$(sv "$S" soak-$p event_loop_delay_p99_s)"), max $(ms "$(sv "$S" soak-$p event_loop_delay_max_s)")"
  done
  echo
} >"$OUT/ratios.txt"

{
  echo "# floor, sipd, Kamailio: $(date -u)"
  echo
  echo "git rev-parse HEAD: \`$HEAD\`"
  echo
  echo "Commands (in order; compare.sh took $(($(date +%s) - T0)) s):"
  echo
  echo '```sh'
  echo "cd $REPO"
  cat "$OUT/commands.txt"
  echo '```'
  echo
  [ ${#FAILED_RUNS[@]} = 0 ] || { echo "**Runs that failed:** ${FAILED_RUNS[*]} (see their logs)"; echo; }
  cat "$OUT/ratios.txt"
  for d in kamailio sipd floor kamailio-soak sipd-soak; do
    echo "### $d ($OUT/$d)"
    echo
    if [ -s "$OUT/$d/summary.md" ]; then cat "$OUT/$d/summary.md"; else echo "(no summary: see $OUT/$d.log)"; echo; fi
    echo
  done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "summary: $OUT/summary.md"
[ ${#FAILED_RUNS[@]} = 0 ]
