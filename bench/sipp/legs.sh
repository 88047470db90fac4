#!/bin/bash
# legs.sh PCAP [SERVER_PORT]: where a call's INVITE round trip goes, per second of a capture.
# Capture a load.sh call step or soak on loopback, e.g. (pinned to SIPp's core, bounded):
#   taskset -c 1 timeout 100 tcpdump -i lo -s 0 -c 150000 -w /tmp/calls.pcap udp port 5080
# then `bash bench/sipp/legs.sh /tmp/calls.pcap 5080` (needs tshark). For each call (Call-ID) whose
# INVITE came from the UAC port (26111) and went to the UAS port (26112): the server's 407 time, the
# UAC's time to resend with credentials, the server's time to forward it, the UAS's time to 200, and
# the server's time to relay the 200; means per second of the capture (by the first INVITE) and
# counts over 20 ms.
pcap=$1; sp=${2:-5060}
tshark -r "$pcap" -o sip.tcp.port:0 -d udp.port==$sp,sip -d udp.port==26111,sip -d udp.port==26112,sip -T fields -E separator=';' \
  -e frame.time_relative -e udp.srcport -e udp.dstport -e sip.Call-ID -e sip.CSeq.method -e sip.Status-Code -e sip.Method -e sip.CSeq.seq 2>/dev/null |
awk -F';' -v sp="$sp" '
  { t=$1*1000; src=$2; dst=$3; cid=$4; cm=$5; st=$6; me=$7 }
  me=="INVITE" && src==26111 { if (!(cid in i1)) i1[cid]=t; else i2[cid]=t; next }
  st=="407" && dst==26111 { c407[cid]=t; next }
  me=="INVITE" && dst==26112 && !(cid in fw) { fw[cid]=t; next }
  st=="200" && cm=="INVITE" && src==26112 && !(cid in u200) { u200[cid]=t; next }
  st=="200" && cm=="INVITE" && dst==26111 && !(cid in o200) { o200[cid]=t; next }
  END {
    for (c in i2) if ((c in fw) && (c in u200) && (c in o200)) {
      s=int(i1[c]/1000); n[s]++
      a=c407[c]-i1[c]; b=fw[c]-i2[c]; d=u200[c]-fw[c]; e=o200[c]-u200[c]; g=i2[c]-c407[c]
      A[s]+=a; B[s]+=b; D[s]+=d; E[s]+=e; G[s]+=g
      if (b>20) Bs[s]++; if (d>20) Ds[s]++; if (a>20) As[s]++
    }
    print "sec n | mean ms: 407 | 407->INV2(UAC) | INV2->fwd(sipd) | fwd->200(UAS) | 200 relay(sipd) | count>20ms: 407 fwd uas"
    for (s=0; s<30; s++) if (n[s]) printf "%d %d | %.1f | %.1f | %.1f | %.1f | %.1f | %d %d %d\n", s, n[s], A[s]/n[s], G[s]/n[s], B[s]/n[s], D[s]/n[s], E[s]/n[s], As[s]+0, Bs[s]+0, Ds[s]+0
  }'
