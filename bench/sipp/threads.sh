#!/bin/bash
# threads.sh OUT SECS: every 0.5 s for SECS s, the utime+stime ticks (1/100 s) of each thread of the
# sipd process (`dist/cli/sipd.js`) into OUT as `time tid ticks`: the main thread is the one whose tid is
# the pid; the others are V8's workers (concurrent compiler, GC helpers) and libuv's pool. Run it
# pinned to SIPp's core next to a load.sh run:  taskset -c 1 bash bench/sipp/threads.sh /tmp/thr.txt 70 &
out=$1; secs=$2; : > "$out"
for ((i=0; i<secs*2; i++)); do
  s=$(pgrep -f "dist/cli/sipd.js" | head -1)
  if [ -n "$s" ]; then
    ts=$(date +%s.%N | cut -c1-14)
    for t in /proc/$s/task/*; do
      n=${t##*/}; awk -v ts="$ts" -v n="$n" '{ sub(/^.*\) /, ""); print ts, n, $12+$13 }' $t/stat
    done >> "$out"
  fi
  sleep 0.5
done

