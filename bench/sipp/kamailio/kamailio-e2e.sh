#!/bin/sh
# Run stock Kamailio 5.6 (WITH_MYSQL, WITH_AUTH, WITH_USRLOCDB) on 127.0.0.1 for
# side-by-side runs of the SIPp scenarios in bench/sipp. See ../README.md.
#
#   kamailio-e2e.sh db        create database kamailio_e2e with kamdbctl (drops it first)
#   kamailio-e2e.sh cfg       write $KAM_DIR/kamailio.cfg (stock cfg + defines + listen)
#   kamailio-e2e.sh start     start kamailio in the background (pid in $KAM_DIR/kamailio.pid)
#   kamailio-e2e.sh stop      stop it (SIGTERM by pid)
#   kamailio-e2e.sh add USER@DOMAIN PASSWORD    kamctl add
#   kamailio-e2e.sh kamctl ARGS...              any kamctl command with our settings
set -eu
KAM_PORT=${KAM_PORT:-5070}
KAM_DIR=${KAM_DIR:-/tmp/kamailio-e2e}
# SIP domain served (alias); a name, not 127.0.0.1: an alias 127.0.0.1 matches
# every port, so the UAs' own contacts on 127.0.0.1 would count as "myself".
KAM_DOMAIN=${KAM_DOMAIN:-kamailio.test}
STOCK_CFG=${STOCK_CFG:-/etc/kamailio/kamailio.cfg}

# kamctl/kamdbctl settings (they only read kamctlrc files, which are all
# commented out in /etc/kamailio, so environment variables pass through).
export DBENGINE=MYSQL DBHOST=127.0.0.1 DBPORT=3306 DBNAME=kamailio_e2e
export DBRWUSER=kame2e_rw DBRWPW=kame2e_rw DBROUSER=kame2e_ro DBROPW=kame2e_ro
export DBROOTUSER=root DBROOTPWSKIP=yes CHARSET=latin1
export INSTALL_EXTRA_TABLES=no INSTALL_PRESENCE_TABLES=no INSTALL_DBUID_TABLES=no
export SIP_DOMAIN=$KAM_DOMAIN
# kamctl talks to the running kamailio over this FIFO (jsonrpcs)
export CTLENGINE=RPCFIFO RPCFIFOPATH=$KAM_DIR/kamailio_rpc.fifo

mkdir -p "$KAM_DIR"
cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
db)
  mysql -h127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS kamailio_e2e'
  kamdbctl create kamailio_e2e
  ;;
cfg)
  awk -v port="$KAM_PORT" -v dir="$KAM_DIR" -v domain="$KAM_DOMAIN" '
    NR == 1 { print; print "#!define WITH_MYSQL"; print "#!define WITH_AUTH"; print "#!define WITH_USRLOCDB";
              print "#!define DBURL \"mysql://kame2e_rw:kame2e_rw@127.0.0.1:3306/kamailio_e2e\""; next }
    /^# listen=udp:10.0.0.10:5060/ { print; print "listen=udp:127.0.0.1:" port; print "listen=tcp:127.0.0.1:" port; next }
    /^# alias="sip.mydomain.com"/ { print; print "alias=\"" domain "\""; next }
    /^modparam\("jsonrpcs", "pretty_format", 1\)/ { print; print "modparam(\"jsonrpcs\", \"fifo_name\", \"" dir "/kamailio_rpc.fifo\")"; print "modparam(\"ctl\", \"binrpc\", \"unix:" dir "/kamailio_ctl\")"; next }
    { print }' "$STOCK_CFG" > "$KAM_DIR/kamailio.cfg"
  diff -u "$STOCK_CFG" "$KAM_DIR/kamailio.cfg" || true
  kamailio -c -f "$KAM_DIR/kamailio.cfg" 2>&1 | tail -2
  ;;
start)
  [ -f "$KAM_DIR/kamailio.cfg" ] || "$0" cfg >/dev/null
  # -DD: no daemon, -E: log to stderr; -m/-M: shared/private memory (MB)
  nohup kamailio -f "$KAM_DIR/kamailio.cfg" -DD -E -m 1024 -M 16 >"$KAM_DIR/kamailio.log" 2>&1 &
  echo $! > "$KAM_DIR/kamailio.pid"
  i=0
  while [ $i -lt 50 ]; do
    if ss -lun | grep -q "127.0.0.1:$KAM_PORT "; then echo "kamailio pid $(cat "$KAM_DIR/kamailio.pid") on udp+tcp 127.0.0.1:$KAM_PORT"; exit 0; fi
    sleep 0.2; i=$((i+1))
  done
  echo "kamailio did not start; see $KAM_DIR/kamailio.log" >&2; tail -20 "$KAM_DIR/kamailio.log" >&2; exit 1
  ;;
stop)
  if [ -f "$KAM_DIR/kamailio.pid" ]; then kill "$(cat "$KAM_DIR/kamailio.pid")" 2>/dev/null || true; rm -f "$KAM_DIR/kamailio.pid"; fi
  ;;
add)
  kamctl add "$@"
  ;;
kamctl)
  kamctl "$@"
  ;;
*)
  sed -n 2,12p "$0"; exit 2
  ;;
esac
