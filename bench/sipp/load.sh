#!/usr/bin/env bash
# Side-by-side SIPp load benchmark: sipd, stock Kamailio 5.6 (MySQL auth +
# usrloc), or the floor (a bare Node.js UDP responder, floor.mjs).
#
#   TARGET=sipd     bench/sipp/load.sh
#   TARGET=kamailio bench/sipp/load.sh
#   TARGET=floor    bench/sipp/load.sh      # REGISTER phase (and REGISTER soak) only
#   bench/sipp/compare.sh                   # all three back to back, with ratios
#
# Phase (a): REGISTER -> 401 -> REGISTER+Authorization -> 200 (reg.xml) at
# REG_RATES per second, STEP_S seconds each, USERS users (load1..loadUSERS),
# all from REG_PORT.
# Phase (b): authenticated calls uac-call.xml (INVITE/407/ACK/INVITE+auth/100/
# 180/200/ACK/BYE/200, -d CALL_D_MS) to a registered callee run by uas.xml, at
# CALL_RATES calls/s. The calls use users of their own, never the REGISTER
# phase's (whose contacts point at REG_PORT, where nothing answers later):
# callers load(USERS+1)..load(USERS+USERS/2) call
# load(USERS+USERS/2+1)..load(2*USERS), all callees registered from the UAS
# port; 2*USERS subscribers are inserted. The UAS rings for UAS_RING_MS
# (uas.xml -d, default 0), so INVITE->200 measures the proxy. The UAS runs
# with -default_behaviors all,-abortunexp (as uas-lossy.xml does): a proxy may
# forward the stateless 2xx ACK after the BYE, which is not a failure. The UAC
# scenario is CALL_SCENARIO (default uac-call-reorder.xml: the 100 is mandatory,
# the 180 may arrive before or after the 200, because Kamailio's parallel workers
# reorder them under load; every call lasts 20 ms longer, for both servers).
# CALL_SCENARIO=uac-call.xml is the strict scenario (100 and 180 in order).
# TARGET=floor runs phase (a) only, against floor.mjs.
#
# Soak (optional, after the steps): SOAK_REG_RATE and/or SOAK_CALL_RATE run
# reg.xml / uac-call.xml at that rate for SOAK_S seconds, then leave the
# server idle for SOAK_AFTER_S seconds; server RSS is sampled every
# SOAK_SAMPLE_S seconds during and after the load (sipd's V8 heap only after
# it: reading it means scraping /metrics)
# ($OUT/soak-rss.tsv). sipd's /metrics is scraped right before and right
# after the load: sipd_event_loop_delay_{p99,max}_seconds are computed since
# the previous scrape, so the second scrape covers the soak load ("n/a" when
# the gauges are absent). For figures that are not coloured by the step
# phase's overload, run the soak in a fresh server (REG_RATES="" CALL_RATES="",
# as compare.sh does).
#
# Every step and soak: response times from SIPp -trace_rtt ($OUT/NAME.rtt.csv):
# REGISTER+Authorization -> 200 (rtd "reg" in reg.xml) and authenticated
# INVITE -> 200 (rtd "invite" in uac-call.xml), p50/p99/max in ms (SIPp's
# resolution here is ~4 ms; the last < rtt_freq samples of a run are not
# written by SIPp).
#
# The server (sipd's / the floor's node process; Kamailio's main process and
# all its children) and every mariadbd thread are pinned to core 0, SIPp to
# core 1; mariadbd is given back cores 0-1 at the end. Per step: target and
# achieved rate, successful, failed, retransmissions (-trace_stat), CPU
# seconds of the server and of mariadbd (utime+stime from /proc/PID/stat
# before/after), CPU us per operation, SIPp's own CPU, busy ticks of core 0
# not explained by server+mariadbd (other people's load), MariaDB Questions,
# server RSS, response times. A step with more than OTHER_MAX % foreign load
# on core 0 is re-run once. A step "passes" with 0 failed and < 1 %
# retransmissions; with STOP_AFTER_FAIL=N > 0 a phase stops after N
# consecutive steps that did not pass.
#
# sipd is run from the build: `npm run --silent build` once (SIPD_BUILD=0
# skips it), then SIPD_CMD (default `env MALLOC_MMAP_THRESHOLD_=131072 node
# dist/cli/sipd.js`, as `npm start` runs it; run from the repo; it must exec
# the server itself: its pid is the one measured).
#
# Environment (defaults): REG_RATES="1000 2000 4000 6000 8000 10000"
# CALL_RATES="250 500 1000 2000 2500" STEP_S=12 USERS=2000 CALL_D_MS=20 (uac -d)
# UAS_RING_MS=0 (uas -d) OTHER_MAX=15 STOP_AFTER_FAIL=0 OUT=/tmp/sipd-load-TARGET-TIME
# soak: SOAK_REG_RATE= SOAK_CALL_RATE= SOAK_S=60 SOAK_AFTER_S=40 SOAK_SAMPLE_S=5
# sipd: SIPD_PORT=5080 SIPD_MPORT=9180 SIPD_DBNAME=sipd_load SIPD_DOMAIN=127.0.0.1 SIPD_CMD SIPD_BUILD=1
# kamailio: KAM_PORT=5070 KAM_DOMAIN=kamailio.test KAM_DIR=/tmp/kamailio-load
# floor: FLOOR_PORT=5090 FLOOR_DOMAIN=127.0.0.1
# SIPp ports: REG_PORT=26110 UAC_PORT=26111 UAS_PORT=26112. Never 5060.
#
# Output: $OUT/steps.tsv (one line per step and soak), $OUT/soak.tsv,
# $OUT/soak-rss.tsv, $OUT/summary.md (markdown tables), SIPp
# stat/screen/err/rtt files, server logs. Every loop is bounded; every SIPp
# run has -timeout (steps 3*STEP_S+30 s, soaks SOAK_S+60 s) and an outer
# `timeout -k`.
set -euo pipefail

TARGET=${TARGET:-}
case "$TARGET" in sipd|kamailio|floor) ;; *) echo "usage: TARGET=sipd|kamailio|floor $0" >&2; exit 2 ;; esac

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
REG_RATES=${REG_RATES-"1000 2000 4000 6000 8000 10000"}
CALL_RATES=${CALL_RATES-"250 500 1000 2000 2500"}
STEP_S=${STEP_S:-12}
CALL_D_MS=${CALL_D_MS:-20}
UAS_RING_MS=${UAS_RING_MS:-0}
CALL_SCENARIO=${CALL_SCENARIO:-uac-call-reorder.xml}
[ -f "$(dirname "$0")/$CALL_SCENARIO" ] || { echo "CALL_SCENARIO=$CALL_SCENARIO: no such scenario in bench/sipp" >&2; exit 2; }
USERS=${USERS:-2000}
OTHER_MAX=${OTHER_MAX:-15}
STOP_AFTER_FAIL=${STOP_AFTER_FAIL:-0}
SOAK_REG_RATE=${SOAK_REG_RATE:-}
SOAK_CALL_RATE=${SOAK_CALL_RATE:-}
SOAK_S=${SOAK_S:-60}
SOAK_AFTER_S=${SOAK_AFTER_S:-40}
SOAK_SAMPLE_S=${SOAK_SAMPLE_S:-5}
STEP_TMO=""  # SIPp -timeout of a step; set by soak()
OUT=${OUT:-/tmp/sipd-load-$TARGET-$(date +%Y%m%d-%H%M%S)}
REG_PORT=${REG_PORT:-26110}
UAC_PORT=${UAC_PORT:-26111}
UAS_PORT=${UAS_PORT:-26112}
SIPD_PORT=${SIPD_PORT:-5080}
SIPD_MPORT=${SIPD_MPORT:-9180}
SIPD_DBNAME=${SIPD_DBNAME:-sipd_load}
SIPD_CMD=${SIPD_CMD:-env MALLOC_MMAP_THRESHOLD_=131072 node dist/cli/sipd.js}
SIPD_BUILD=${SIPD_BUILD:-1}
FLOOR_PORT=${FLOOR_PORT:-5090}
export KAM_PORT=${KAM_PORT:-5070}
export KAM_DOMAIN=${KAM_DOMAIN:-kamailio.test}
export KAM_DIR=${KAM_DIR:-/tmp/kamailio-load}
MYSQL="mysql -h127.0.0.1 -uroot"
HZ=$(getconf CLK_TCK)
SIPP_SERVER_CORE=0
SIPP_CORE=1

if [ "$TARGET" = floor ]; then
  CALL_RATES=""
  [ -z "$SOAK_CALL_RATE" ] || { echo "TARGET=floor answers REGISTER only: SOAK_CALL_RATE ignored" >&2; SOAK_CALL_RATE=""; }
fi
for v in STEP_S USERS SOAK_S SOAK_AFTER_S SOAK_SAMPLE_S CALL_D_MS UAS_RING_MS STOP_AFTER_FAIL; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a whole number (${!v})" >&2; exit 2; }
done
for r in $REG_RATES $CALL_RATES $SOAK_REG_RATE $SOAK_CALL_RATE; do
  [[ $r =~ ^[1-9][0-9]*$ ]] || { echo "rates must be whole numbers > 0 ($r)" >&2; exit 2; }
done
for p in "$SIPD_PORT" "$KAM_PORT" "$FLOOR_PORT" "$REG_PORT" "$UAC_PORT" "$UAS_PORT"; do
  [ "$p" != 5060 ] || { echo "port 5060 is not allowed" >&2; exit 2; }
done
case "$TARGET" in
  sipd) PORT=$SIPD_PORT; DOMAIN=${SIPD_DOMAIN:-127.0.0.1} ;;
  kamailio) PORT=$KAM_PORT; DOMAIN=$KAM_DOMAIN ;;
  floor) PORT=$FLOOR_PORT; DOMAIN=${FLOOR_DOMAIN:-127.0.0.1} ;;
esac
for p in "$PORT" "$REG_PORT" "$UAC_PORT" "$UAS_PORT"; do
  if ss -Hlun "sport = :$p" | grep -q . || ss -Hltn "sport = :$p" | grep -q .; then echo "port $p is in use" >&2; exit 1; fi
done
command -v sipp >/dev/null || { echo "sipp missing (apt-get install -y sip-tester)" >&2; exit 1; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "results in $OUT"
MYSQLD_PID=$(pgrep -xo mariadbd || pgrep -xo mysqld || true)
[ -n "$MYSQLD_PID" ] || { echo "mariadbd is not running" >&2; exit 1; }
SERVER_PID=""
SIPP_PIDS=()
SAMPLER_PID=""

# ---------------------------------------------------------------- cleanup
cleanup() {
  set +e
  local p
  [ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null
  for p in "${SIPP_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  if [ "$TARGET" = kamailio ]; then
    "$HERE/kamailio/kamailio-e2e.sh" stop
    if [ -n "$SERVER_PID" ]; then
      for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$SERVER_PID" 2>/dev/null
    fi
  elif [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 75); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SERVER_PID" 2>/dev/null
  fi
  taskset -a -pc 0-1 "$MYSQLD_PID" >/dev/null && echo "mariadbd $MYSQLD_PID affinity restored: $(taskset -pc "$MYSQLD_PID" | sed 's/.*: //')"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
# utime+stime (ticks) of the given pids
ticks() {
  local t=0 p s
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    t=$((t + ${12} + ${13}))
  done
  echo $t
}
server_ticks() { local p; read -ra p <<<"$(server_pids | tr '\n' ' ')"; ticks "${p[@]}"; }
# busy ticks of one cpu (all but idle and iowait)
cpu_busy() {
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
# user+sys seconds of this shell's waited-for children (the SIPp runs), from
# the `times` builtin run in this shell (a $(...) subshell would see 0)
child_cpu_s() { # VAR
  times >"$OUT/.times"
  printf -v "$1" '%s' "$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$OUT/.times")"
}
# UDP datagrams dropped by the kernel because a socket receive buffer was full (all sockets)
udp_rcvbuf_errors() { awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1; next } print $c }' /proc/net/snmp; }
metrics() { # FILE: sipd's /metrics into FILE (empty file for the other targets or on error)
  : >"$1"
  [ "$TARGET" = sipd ] || return 0
  curl -fsS --max-time 5 "http://127.0.0.1:$SIPD_MPORT/metrics" >"$1" 2>/dev/null || true
}
# sipd's event-loop delay gauges cover the time since the previous /metrics
# scrape, so nothing may scrape during a soak's load: SCRAPE_OK=0 there
SCRAPE_OK=1
heap_mb() { # sipd only: V8 heap in use (MB) from /metrics; NA while SCRAPE_OK=0
  if [ "$TARGET" != sipd ] || [ "$SCRAPE_OK" != 1 ]; then echo NA; return; fi
  curl -fsS --max-time 5 "http://127.0.0.1:$SIPD_MPORT/metrics" 2>/dev/null | awk '/^nodejs_heap_size_used_bytes/ { printf "%.0f", $2 / 1048576 }'
}
# value of an unlabelled (or first labelled) sample in a /metrics dump, or n/a
metric_val() { # FILE NAME
  awk -v n="$2" '($1 == n || index($1, n "{") == 1) && !done { print $2; done = 1 } END { if (!done) print "n/a" }' "$1"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
questions() { $MYSQL -N -e "SHOW GLOBAL STATUS LIKE 'Questions'" | awk '{ print $2 }'; }
server_pids() {
  if [ "$TARGET" != kamailio ]; then echo "$SERVER_PID"; return; fi
  # kamailio main process and its children (two levels)
  local kids
  kids=$(pgrep -P "$SERVER_PID" | tr '\n' ' ')
  echo "$SERVER_PID $kids"
  local k
  for k in $kids; do pgrep -P "$k" | tr '\n' ' '; done
}
# value of a column (by header name) in the last line of a SIPp -trace_stat CSV
stat_col() {
  [ -s "$1" ] || { echo NA; return; }
  awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next } { last = $0 }
    END { if (!c || last == "") { print "NA"; exit } split(last, f, ";"); print f[c] }' "$1"
}
num() { [[ $1 =~ ^[0-9]+$ ]] && echo "$1" || echo 0; } # SIPp counter or 0 when the stat file is missing
# seconds from StartTime to CurrentTime of the last line (ElapsedTime(C) has
# whole seconds only; the time columns are "date<TAB>time<TAB>epoch")
stat_elapsed() {
  local a b
  a=$(stat_col "$1" 'StartTime' | awk -F'\t' '{ print $3 }')
  b=$(stat_col "$1" 'CurrentTime' | awk -F'\t' '{ print $3 }')
  awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", (a == "" || b == "") ? 0 : b - a }'
}
# "p50 p99 max n" (ms) of a SIPp -trace_rtt file (Date_ms;response_time_ms;rtd_no), nearest rank; NA when empty
rtt_stats() { # FILE
  [ -s "$1" ] || { echo "NA NA NA 0"; return; }
  awk -F';' 'NR > 1 && $2 != "" { print $2 }' "$1" | sort -g | awk '
    { v[++n] = $1 }
    END { if (!n) { print "NA NA NA 0"; exit }
          i50 = int(n * 0.50); if (i50 < n * 0.50) i50++; if (i50 < 1) i50 = 1
          i99 = int(n * 0.99); if (i99 < n * 0.99) i99++; if (i99 < 1) i99 = 1
          printf "%g %g %g %d\n", v[i50], v[i99], v[n], n }'
}

SIPP_COMMON=(-i 127.0.0.1 -t u1 -nostdin -buff_size 4194304 -max_recv_loops 5000 -max_sched_loops 5000)
# run_sipp NAME TIMEOUT_S ARGS... : SIPp pinned to SIPP_CORE, in the foreground,
# bounded, run in $OUT (where -trace_rtt writes SCENARIO_PID_rtt.csv; renamed
# to NAME.rtt.csv). Response times are dumped every RTT_FREQ calls.
RTT_FREQ=100
run_sipp() {
  local name=$1 tmo=$2; shift 2
  rm -f "$OUT/$name".*
  local rc=0
  cd "$OUT"
  timeout -k 5 $((tmo + 15)) taskset -c $SIPP_CORE sipp "127.0.0.1:$PORT" "${SIPP_COMMON[@]}" "$@" \
    -timeout "${tmo}s" -timeout_error -trace_rtt -rtt_freq "$RTT_FREQ" \
    -trace_stat -stf "$OUT/$name.stat.csv" -fd 1 -trace_screen -screen_file "$OUT/$name.screen" \
    -trace_err -error_file "$OUT/$name.err" </dev/null >"$OUT/$name.out" 2>&1 || rc=$?
  local f
  for f in "$OUT"/*_rtt.csv; do [ -e "$f" ] && mv "$f" "$OUT/$name.rtt.csv"; done
  echo "$rc"
}
rtt_freq_for() { # RATE: dump response times ~10 times a second (SIPp drops the last partial batch)
  local f=$(($1 / 10))
  [ "$f" -ge 1 ] || f=1
  [ "$f" -le 200 ] || f=200
  echo "$f"
}

# ---------------------------------------------------------------- data
gen_users() { # FIRST LAST -> SIPp users injection file
  echo SEQUENTIAL
  seq "$1" "$2" | awk -v d="$DOMAIN" '{ printf "load%d;%s;[authentication username=load%d password=pw%d]\n", $1, d, $1, $1 }'
}
gen_calls() { # FIRST COUNT : load(FIRST+i) calls load(FIRST+COUNT+i), i = 0..COUNT-1
  echo SEQUENTIAL
  seq "$1" $(($1 + $2 - 1)) | awk -v d="$DOMAIN" -v n="$2" '{ printf "load%d;%s;[authentication username=load%d password=pw%d];load%d\n", $1, d, $1, $1, $1 + n }'
}
insert_users_sql() { # DB COUNT: load1..loadCOUNT
  echo "DELETE FROM $1.subscriber WHERE username LIKE 'load%' AND domain='$DOMAIN';"
  echo "DELETE FROM $1.location WHERE username LIKE 'load%';"
  seq 1 "$2" | awk -v db="$1" -v d="$DOMAIN" '
    NR % 500 == 1 { if (NR > 1) print ";"; printf "INSERT INTO %s.subscriber (username, domain, password, ha1, ha1b) VALUES\n", db; sep = "" }
    { u = "load" $1; p = "pw" $1
      printf "%s(\x27%s\x27,\x27%s\x27,\x27%s\x27,MD5(\x27%s:%s:%s\x27),MD5(\x27%s@%s:%s:%s\x27))", sep, u, d, p, u, d, p, u, d, d, p; sep = ",\n" }
    END { print ";" }'
}
HALF=$((USERS / 2))
[ "$HALF" -ge 1 ] || { echo "USERS must be >= 2" >&2; exit 2; }
# REGISTER phase: load1..loadUSERS; calls: load(USERS+1)..load(USERS+HALF) -> load(USERS+HALF+1)..load(USERS+2*HALF)
gen_users 1 "$USERS" >"$OUT/users.csv"
gen_users $((USERS + HALF + 1)) $((USERS + 2 * HALF)) >"$OUT/callees.csv"
gen_calls $((USERS + 1)) "$HALF" >"$OUT/calls.csv"
NEED_CALLS=0
[ -z "$CALL_RATES$SOAK_CALL_RATE" ] || NEED_CALLS=1

# ---------------------------------------------------------------- start the server
{
  echo "date: $(date -u)"
  echo "uptime: $(uptime)"
  echo "nproc: $(nproc); cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "node: $(node --version); sipp: $(sipp -v 2>&1 | grep -o 'v[0-9.]*[^ ]*' | head -1); kamailio: $(kamailio -v 2>/dev/null | head -1); mariadb: $($MYSQL -N -e 'select version()')"
  echo "git: $(git -C "$REPO" rev-parse HEAD) ($(git -C "$REPO" status --porcelain --untracked-files=no | wc -l) modified tracked files)"
  echo "target: $TARGET; REG_RATES=\"$REG_RATES\" CALL_RATES=\"$CALL_RATES\" STEP_S=$STEP_S USERS=$USERS CALL_D_MS=$CALL_D_MS UAS_RING_MS=$UAS_RING_MS CALL_SCENARIO=$CALL_SCENARIO SOAK_REG_RATE=$SOAK_REG_RATE SOAK_CALL_RATE=$SOAK_CALL_RATE SOAK_S=$SOAK_S SOAK_AFTER_S=$SOAK_AFTER_S"
} | tee "$OUT/env.txt"

taskset -a -pc $SIPP_SERVER_CORE "$MYSQLD_PID" >/dev/null
case "$TARGET" in
sipd)
  cd "$REPO"
  if [ "$SIPD_BUILD" = 1 ]; then
    echo "building sipd (npm run --silent build)"
    npm run --silent build >"$OUT/build.log" 2>&1 || { echo "build failed: see $OUT/build.log" >&2; tail -20 "$OUT/build.log" >&2; exit 1; }
  fi
  $MYSQL -e "DROP DATABASE IF EXISTS $SIPD_DBNAME; CREATE DATABASE $SIPD_DBNAME"
  export SIPD_DB="mysql://root:@127.0.0.1:3306/$SIPD_DBNAME"
  export SIPD_LISTEN="udp:127.0.0.1:$PORT,tcp:127.0.0.1:$PORT" SIPD_DOMAINS="$DOMAIN"
  export SIPD_METRICS="127.0.0.1:$SIPD_MPORT" SIPD_LOG_LEVEL=${SIPD_LOG_LEVEL:-warn}
  if [ -f dist/cli/sipctl.js ]; then node dist/cli/sipctl.js db init; else node --import tsx src/cli/sipctl.ts db init; fi
  insert_users_sql "$SIPD_DBNAME" $((2 * USERS)) | $MYSQL
  echo "sipd command (in $REPO): $SIPD_CMD" | tee -a "$OUT/env.txt"
  # shellcheck disable=SC2086
  taskset -c $SIPP_SERVER_CORE $SIPD_CMD >"$OUT/server.out" 2>"$OUT/server.err" &
  SERVER_PID=$!
  ok=0
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$SIPD_MPORT/healthz" >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.3
  done
  [ $ok = 1 ] || { echo "sipd did not become healthy" >&2; tail -20 "$OUT/server.err" >&2; exit 1; }
  echo "sipd pid $SERVER_PID on udp+tcp 127.0.0.1:$PORT, domain $DOMAIN, db $SIPD_DBNAME"
  ;;
kamailio)
  if pgrep -x kamailio >/dev/null; then echo "a kamailio is already running: not starting another" >&2; exit 1; fi
  if ! $MYSQL -N -e "SELECT 1 FROM kamailio_e2e.subscriber LIMIT 1" >/dev/null 2>&1; then
    "$HERE/kamailio/kamailio-e2e.sh" db
  fi
  insert_users_sql kamailio_e2e $((2 * USERS)) | $MYSQL
  "$HERE/kamailio/kamailio-e2e.sh" cfg >"$OUT/kamailio-cfg.txt" 2>&1
  taskset -c $SIPP_SERVER_CORE "$HERE/kamailio/kamailio-e2e.sh" start
  SERVER_PID=$(cat "$KAM_DIR/kamailio.pid")
  sleep 1
  cp "$KAM_DIR/kamailio.cfg" "$OUT/kamailio.cfg"
  ;;
floor)
  FLOOR_PORT=$PORT FLOOR_HOST=127.0.0.1 FLOOR_REALM=$DOMAIN \
    taskset -c $SIPP_SERVER_CORE node "$HERE/floor.mjs" >"$OUT/server.out" 2>"$OUT/server.err" &
  SERVER_PID=$!
  ok=0
  for _ in $(seq 1 50); do
    if ss -Hlun "sport = :$PORT" | grep -q .; then ok=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  [ $ok = 1 ] || { echo "floor did not start" >&2; cat "$OUT/server.err" >&2; exit 1; }
  echo "floor pid $SERVER_PID on udp 127.0.0.1:$PORT, realm $DOMAIN"
  ;;
esac
for p in $(server_pids); do
  grep -q "^Cpus_allowed_list:[[:space:]]*$SIPP_SERVER_CORE$" "/proc/$p/status" || { echo "server pid $p not pinned to core $SIPP_SERVER_CORE" >&2; exit 1; }
done
echo "server processes: $(server_pids | wc -w); mariadbd $MYSQLD_PID threads on core $SIPP_SERVER_CORE"

# ---------------------------------------------------------------- steps
printf 'phase\ttarget_rate\tachieved\tsuccessful\tfailed\tretrans\tretrans_pct\tserver_cpu_s\tdb_cpu_s\tus_per_op_server\tus_per_op_db\tus_per_op_total\tsipp_cpu_pct_of_core\tother_core0_pct\tload1\tdb_questions_per_op\trss_before_kb\trss_after_kb\twall_s\tattempt\texit\tudp_rcvbuf_errors\theap_used_mb_after\trtt_p50_ms\trtt_p99_ms\trtt_max_ms\trtt_samples\n' >"$OUT/steps.tsv"

# record_step S_T0 D_T0 C0_0 Q0 RSS0 W0 LOAD1 SIPP_S: records the step line
# from the values before the step and the STEP_* globals. Globals in: PHASE RATE ATTEMPT.
record_step() {
  local s_t0=$1 d_t0=$2 c0_0=$3 q0=$4 rss0=$5 w0=$6 load1=$7 sipp_s=$8
  local s_t1 d_t1 c0_1 q1 rss1 w1 rtt
  s_t1=$(server_ticks); d_t1=$(ticks "$MYSQLD_PID"); c0_1=$(cpu_busy $SIPP_SERVER_CORE)
  q1=$(questions); rss1=$(rss_kb "$SERVER_PID"); w1=$(date +%s.%N)
  rtt=$(rtt_stats "$STEP_RTT_FILE" | tr ' ' '\t')
  awk -v OFS='\t' -v ph="$PHASE" -v rate="$RATE" -v ok="$STEP_OK" -v fail="$STEP_FAIL" -v retr="$STEP_RETR" -v el="$STEP_ELAPSED" \
      -v s="$((s_t1 - s_t0))" -v d="$((d_t1 - d_t0))" -v c0="$((c0_1 - c0_0))" -v hz="$HZ" -v q="$((q1 - q0))" \
      -v r0="$rss0" -v r1="$rss1" -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" -v l="$load1" \
      -v sp="$sipp_s" -v att="$ATTEMPT" -v ex="$STEP_EXIT" -v ue="$(( $(udp_rcvbuf_errors) - UDPERR0 ))" -v hp="$(heap_mb)" -v rtt="$rtt" '
    BEGIN {
      ach = (el > 0) ? ok / el : 0
      n = (ok > 0) ? ok : 1
      other = (c0 - s - d) / hz / w * 100; if (other < 0) other = 0
      printf "%s\t%d\t%.0f\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t%s\t%.2f\t%d\t%d\t%.1f\t%d\t%s\t%d\t%s\t%s\n",
        ph, rate, ach, ok, fail, retr, retr / ((ok + fail) ? ok + fail : 1) * 100, s / hz, d / hz,
        s / hz * 1e6 / n, d / hz * 1e6 / n, (s + d) / hz * 1e6 / n, sp / w * 100, other, l, q / n, r0, r1, w, att, ex, ue, hp, rtt
    }' | tee -a "$OUT/steps.tsv" >"$OUT/last-step.tsv"
  cat "$OUT/last-step.tsv"
}

# one REGISTER step (or soak: PHASE soak-reg, STEP_S = SOAK_S)
reg_step() {
  local n=$((RATE * STEP_S)) name="$PHASE-$RATE-a$ATTEMPT" tmo=${STEP_TMO:-$((STEP_S * 3 + 30))}
  local s_t0 d_t0 c0_0 q0 rss0 w0 load1 sp0 sp1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  s_t0=$(server_ticks); d_t0=$(ticks "$MYSQLD_PID"); c0_0=$(cpu_busy $SIPP_SERVER_CORE)
  q0=$(questions); rss0=$(rss_kb "$SERVER_PID"); w0=$(date +%s.%N)
  child_cpu_s sp0; UDPERR0=$(udp_rcvbuf_errors)
  RTT_FREQ=$(rtt_freq_for "$RATE")
  STEP_EXIT=$(run_sipp "$name" "$tmo" -sf "$HERE/reg.xml" -inf "$OUT/users.csv" -p "$REG_PORT" \
    -r "$RATE" -rp 1000 -m "$n" -l $((RATE * 3)) -key expires 300)
  child_cpu_s sp1
  STEP_OK=$(num "$(stat_col "$OUT/$name.stat.csv" 'SuccessfulCall(C)')")
  STEP_FAIL=$(num "$(stat_col "$OUT/$name.stat.csv" 'FailedCall(C)')")
  STEP_RETR=$(num "$(stat_col "$OUT/$name.stat.csv" 'Retransmissions(C)')")
  STEP_ELAPSED=$(stat_elapsed "$OUT/$name.stat.csv")
  STEP_RTT_FILE="$OUT/$name.rtt.csv"
  record_step "$s_t0" "$d_t0" "$c0_0" "$q0" "$rss0" "$w0" "$load1" "$(awk -v a="$sp0" -v b="$sp1" 'BEGIN { print b - a }')"
}

# one call step (or soak: PHASE soak-call): UAS (already registered on UAS_PORT) + UAC
call_step() {
  local n=$((RATE * STEP_S)) name="$PHASE-$RATE-a$ATTEMPT" tmo=${STEP_TMO:-$((STEP_S * 3 + 30))}
  local s_t0 d_t0 c0_0 q0 rss0 w0 load1 sp0 sp1 uas_pid uas_rc=0
  load1=$(cut -d' ' -f1 /proc/loadavg)
  s_t0=$(server_ticks); d_t0=$(ticks "$MYSQLD_PID"); c0_0=$(cpu_busy $SIPP_SERVER_CORE)
  q0=$(questions); rss0=$(rss_kb "$SERVER_PID"); w0=$(date +%s.%N)
  child_cpu_s sp0; UDPERR0=$(udp_rcvbuf_errors)
  rm -f "$OUT/$name-uas".*
  timeout -k 5 $((tmo + 30)) taskset -c $SIPP_CORE sipp "127.0.0.1:$PORT" "${SIPP_COMMON[@]}" -sf "$HERE/uas.xml" -p "$UAS_PORT" \
    -m "$n" -l $((RATE * 10)) -d "$UAS_RING_MS" -default_behaviors all,-abortunexp -timeout $((tmo + 15))s \
    -trace_stat -stf "$OUT/$name-uas.stat.csv" -fd 1 -trace_screen -screen_file "$OUT/$name-uas.screen" \
    -trace_err -error_file "$OUT/$name-uas.err" </dev/null >"$OUT/$name-uas.out" 2>&1 &
  uas_pid=$!
  SIPP_PIDS+=("$uas_pid")
  sleep 0.5
  RTT_FREQ=$(rtt_freq_for "$RATE")
  STEP_EXIT=$(run_sipp "$name" "$tmo" -sf "$HERE/$CALL_SCENARIO" -inf "$OUT/calls.csv" -p "$UAC_PORT" \
    -r "$RATE" -rp 1000 -m "$n" -l $((RATE * 4)) -d "$CALL_D_MS")
  # the UAS ends after n calls (+2 s time-wait) or at its timeout; wait at most 20 s more, then stop it
  for _ in $(seq 1 100); do kill -0 "$uas_pid" 2>/dev/null || break; sleep 0.2; done
  kill "$uas_pid" 2>/dev/null || true
  wait "$uas_pid" || uas_rc=$?
  child_cpu_s sp1
  local uok ufail uretr
  uok=$(num "$(stat_col "$OUT/$name-uas.stat.csv" 'SuccessfulCall(C)')")
  ufail=$(num "$(stat_col "$OUT/$name-uas.stat.csv" 'FailedCall(C)')")
  uretr=$(num "$(stat_col "$OUT/$name-uas.stat.csv" 'Retransmissions(C)')")
  STEP_OK=$(num "$(stat_col "$OUT/$name.stat.csv" 'SuccessfulCall(C)')")
  STEP_FAIL=$(( $(num "$(stat_col "$OUT/$name.stat.csv" 'FailedCall(C)')") + ufail ))
  STEP_RETR=$(( $(num "$(stat_col "$OUT/$name.stat.csv" 'Retransmissions(C)')") + uretr ))
  STEP_ELAPSED=$(stat_elapsed "$OUT/$name.stat.csv")
  STEP_EXIT="$STEP_EXIT/uas:$uas_rc:ok=$uok"
  STEP_RTT_FILE="$OUT/$name.rtt.csv"
  record_step "$s_t0" "$d_t0" "$c0_0" "$q0" "$rss0" "$w0" "$load1" "$(awk -v a="$sp0" -v b="$sp1" 'BEGIN { print b - a }')"
}

step_passed() { # on last-step.tsv: 0 failed and < 1 % retransmissions
  awk -F'\t' '{ exit !($5 == 0 && $7 < 1) }' "$OUT/last-step.tsv"
}

run_phase() { # PHASE FUNC RATES...
  PHASE=$1; local fn=$2 fails=0 other; shift 2
  for RATE in "$@"; do
    for ATTEMPT in 1 2; do
      sleep 2
      "$fn"
      other=$(cut -f14 "$OUT/last-step.tsv")
      if awk -v o="$other" -v m="$OTHER_MAX" 'BEGIN { exit !(o > m) }' && [ "$ATTEMPT" = 1 ]; then
        echo "  foreign load on core 0 was ${other}% (> ${OTHER_MAX}%): re-running this step"
        continue
      fi
      break
    done
    if step_passed; then fails=0; else fails=$((fails + 1)); fi
    if [ "$STOP_AFTER_FAIL" -gt 0 ] && [ "$fails" -ge "$STOP_AFTER_FAIL" ]; then
      echo "  $fails step(s) in a row did not pass (STOP_AFTER_FAIL=$STOP_AFTER_FAIL): no higher $PHASE rates"
      break
    fi
  done
}

# RSS (kB) and V8 heap (MB) of the server every SOAK_SAMPLE_S s, for SECS s (background or foreground)
sample_rss() { # PHASE STATE T_OFFSET SECS
  local i t
  for ((i = 0; i * SOAK_SAMPLE_S <= $4; i++)); do
    t=$(($3 + i * SOAK_SAMPLE_S))
    printf '%s\t%s\t%d\t%s\t%s\n' "$1" "$2" "$t" "$(rss_kb "$SERVER_PID")" "$(heap_mb)" >>"$OUT/soak-rss.tsv"
    [ $(((i + 1) * SOAK_SAMPLE_S)) -le "$4" ] || break
    sleep "$SOAK_SAMPLE_S"
  done
}

# soak KIND RATE: SOAK_S of load at RATE, then SOAK_AFTER_S idle; one line in soak.tsv
soak() {
  local kind=$1 save_step=$STEP_S rss_end rss_idle heap_idle el_p99 el_max
  PHASE=soak-$kind RATE=$2 ATTEMPT=1
  echo "== soak: $kind at $RATE/s for ${SOAK_S}s, then ${SOAK_AFTER_S}s idle (RSS every ${SOAK_SAMPLE_S}s)"
  sleep 2
  metrics "$OUT/$PHASE-$RATE.metrics-before.txt"   # starts sipd's event-loop delay window
  SCRAPE_OK=0                                      # no heap figures from /metrics until the load ends
  sample_rss "$PHASE" load 0 "$SOAK_S" &
  SAMPLER_PID=$!
  STEP_S=$SOAK_S STEP_TMO=$((SOAK_S + 60))       # an overloaded soak is cut 60 s after its planned end
  "${kind}_step"
  STEP_S=$save_step STEP_TMO=
  metrics "$OUT/$PHASE-$RATE.metrics-after.txt"    # event-loop delay during the load
  SCRAPE_OK=1
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  rss_end=$(rss_kb "$SERVER_PID")
  printf '%s\t%s\t%d\t%s\t%s\n' "$PHASE" load-end "$SOAK_S" "$rss_end" "$(heap_mb)" >>"$OUT/soak-rss.tsv"
  el_p99=$(metric_val "$OUT/$PHASE-$RATE.metrics-after.txt" sipd_event_loop_delay_p99_seconds)
  el_max=$(metric_val "$OUT/$PHASE-$RATE.metrics-after.txt" sipd_event_loop_delay_max_seconds)
  echo "  RSS at the end of the load: $((rss_end / 1024)) MB; event-loop delay p99 $el_p99 s, max $el_max s"
  sleep "$SOAK_SAMPLE_S"
  sample_rss "$PHASE" after $((SOAK_S + SOAK_SAMPLE_S)) $((SOAK_AFTER_S - SOAK_SAMPLE_S))
  rss_idle=$(rss_kb "$SERVER_PID"); heap_idle=$(heap_mb)
  echo "  RSS ${SOAK_AFTER_S}s after the load: $((rss_idle / 1024)) MB"
  cut -f1-12,24-27 "$OUT/last-step.tsv" | awk -F'\t' -v OFS='\t' -v a="$SOAK_AFTER_S" \
    -v r0="$(cut -f17 "$OUT/last-step.tsv")" -v r1="$rss_end" -v r2="$rss_idle" -v h="$heap_idle" -v p="$el_p99" -v m="$el_max" \
    '{ print $1, $2, $3, $4, $5, $7, $10, $11, $12, $13, $14, $15, $16, r0, r1, r2, a, p, m, h }' >>"$OUT/soak.tsv"
}

if [ -n "$REG_RATES" ]; then
  echo "== REGISTER+auth, $USERS users, ${STEP_S}s per step"
  # shellcheck disable=SC2086
  run_phase reg reg_step $REG_RATES
fi

if [ "$NEED_CALLS" = 1 ]; then
  echo "== registering $HALF callees (load$((USERS + HALF + 1))..load$((USERS + 2 * HALF))) from 127.0.0.1:$UAS_PORT"
  # a REGISTER answered later than 500 ms (a server just started, a busy machine) is
  # retransmitted, and the 401 for the retransmission then reaches SIPp after it has
  # sent the credentialled REGISTER, which fails that registration: register again
  RTT_FREQ=100
  for att in 1 2 3; do
    rc=$(run_sipp "callee-reg-a$att" 120 -sf "$HERE/reg.xml" -inf "$OUT/callees.csv" -p "$UAS_PORT" -r 200 -rp 1000 -m "$HALF" -l "$HALF" -key expires 3600)
    [ "$rc" != 0 ] || break
    echo "  callee registration attempt $att: exit $rc ($(num "$(stat_col "$OUT/callee-reg-a$att.stat.csv" 'FailedCall(C)')") failed)"
    sleep 2
  done
  [ "$rc" = 0 ] || { echo "callee registration failed 3 times (exit $rc): see $OUT/callee-reg-a*" >&2; exit 1; }
fi

if [ -n "$CALL_RATES" ]; then
  echo "== authenticated calls, load$((USERS + 1))..load$((USERS + HALF)) -> load$((USERS + HALF + 1))..load$((USERS + 2 * HALF)), ${STEP_S}s per step"
  # shellcheck disable=SC2086
  run_phase call call_step $CALL_RATES
fi

if [ -n "$SOAK_REG_RATE$SOAK_CALL_RATE" ]; then
  printf 'phase\ttarget_rate\tachieved\tsuccessful\tfailed\tretrans_pct\tus_per_op_server\tus_per_op_db\tus_per_op_total\trtt_p50_ms\trtt_p99_ms\trtt_max_ms\trtt_samples\trss_before_kb\trss_load_end_kb\trss_after_idle_kb\tidle_s\tevent_loop_delay_p99_s\tevent_loop_delay_max_s\theap_used_mb_after_idle\n' >"$OUT/soak.tsv"
  printf 'phase\tstate\tt_s\trss_kb\theap_used_mb\n' >"$OUT/soak-rss.tsv"
  [ -z "$SOAK_REG_RATE" ] || soak reg "$SOAK_REG_RATE"
  [ -z "$SOAK_CALL_RATE" ] || soak call "$SOAK_CALL_RATE"
fi

# ---------------------------------------------------------------- after
sleep 3
echo "server RSS after: $(rss_kb "$SERVER_PID") kB" | tee -a "$OUT/env.txt"
case "$TARGET" in
sipd)
  metrics "$OUT/metrics.txt"
  grep -E '^sipd_(dropped_total|transactions_active|parse_errors_total|auth_failures_total|event_loop_delay|responses_sent_total\{code="5)' "$OUT/metrics.txt" >"$OUT/metrics-summary.txt" || true
  echo "sipd stderr lines: $(wc -l <"$OUT/server.err"); stdout (warn+) lines: $(wc -l <"$OUT/server.out")" | tee -a "$OUT/env.txt"
  ;;
kamailio)
  echo "kamailio log lines: $(wc -l <"$KAM_DIR/kamailio.log"); ERROR lines: $(grep -c ERROR "$KAM_DIR/kamailio.log" || true)" | tee -a "$OUT/env.txt"
  cp "$KAM_DIR/kamailio.log" "$OUT/kamailio.log"
  ;;
floor)
  echo "floor stderr lines: $(wc -l <"$OUT/server.err")" | tee -a "$OUT/env.txt"
  ;;
esac

# summary (last attempt of each step)
awk -F'\t' -v tgt="$TARGET" '
  NR == 1 || $1 ~ /^soak-/ { next }
  { key = $1 "-" $2; row[key] = $0; if (!(key in seen)) { order[++n] = key; seen[key] = 1 } }
  END {
    if (!n) exit
    print "| " tgt " phase | target/s | achieved/s | ok | failed | retrans (%) | server CPU s | DB CPU s | us/op server | us/op DB | us/op total | SIPp CPU % (of 1 core) | other load on core 0 % | load1 | RSS after (MB) | rtt p50 / p99 / max (ms) |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= n; i++) { split(row[order[i]], f, "\t")
      printf "| %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s / %s / %s |\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13], f[14], f[15], f[18] / 1024, f[24], f[25], f[26]
      pass = (f[5] == 0 && f[7] < 1)
      if (pass && f[2] > best[f[1]]) { best[f[1]] = f[2]; cost[f[1]] = f[10] " / " f[11] " / " f[12]; ach[f[1]] = f[3] }
    }
    print ""
    for (p in best) printf "highest %s rate with 0 failed and < 1%% retransmissions: %s/s (achieved %s/s over the whole run incl. its tail; us/op server/DB/total there: %s)\n", p, best[p], ach[p], cost[p]
    print ""
  }' "$OUT/steps.tsv" | tee "$OUT/summary.md"
if [ -s "$OUT/soak.tsv" ]; then
  awk -F'\t' -v tgt="$TARGET" '
    NR == 1 { print "| " tgt " soak | rate/s | achieved/s | ok | failed | retrans % | us/op server | us/op DB | us/op total | rtt p50 / p99 / max (ms) | RSS before / end of load / after idle (MB) | event-loop delay p99 / max (s) |"; print "|---|---|---|---|---|---|---|---|---|---|---|---|"; next }
    { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s | %.0f / %.0f / %.0f (%s s idle) | %s / %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14 / 1024, $15 / 1024, $16 / 1024, $17, $18, $19 }
    END { print "" }' "$OUT/soak.tsv" | tee -a "$OUT/summary.md"
fi
