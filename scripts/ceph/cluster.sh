#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for tests and benchmarks: one mon, one
# mgr, one bluestore OSD on a sparse file, all on 127.0.0.1, no systemd, no auth.
#
#   scripts/ceph/cluster.sh start [DIR]   start a cluster in DIR (default: a new temp dir);
#                                         prints DIR/ceph.conf when it is ready
#   scripts/ceph/cluster.sh stop DIR      stop its daemons and remove DIR
#   scripts/ceph/cluster.sh stop-osd DIR  stop the OSD (the cluster "goes away")
#   scripts/ceph/cluster.sh start-osd DIR start it again and wait until it is up
#   scripts/ceph/cluster.sh wait DIR      wait for HEALTH_OK, 1 OSD up, an active mgr
#
# Needs ceph-mon ceph-osd ceph-mgr ceph-common (Debian 12: Ceph 16.2). The pool
# `rbd` (size 1) is created and initialised for RBD. Ready in about 5-10 s.
set -euo pipefail

cmd=${1:-}
[ -n "$cmd" ] || { echo "usage: $0 start [DIR] | stop DIR | stop-osd DIR | start-osd DIR | wait DIR" >&2; exit 2; }

die() { echo "ceph cluster: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND (10 times a second) until it succeeds
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${limit}s waiting for $what"
    sleep 0.1
  done
}

ready() {
  local dir=$1
  timeout 5 ceph -c "$dir/ceph.conf" status -f json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
ok = (s["health"]["status"] == "HEALTH_OK" and s["osdmap"]["num_up_osds"] == 1
      and s["osdmap"]["num_in_osds"] == 1 and s["mgrmap"]["available"])
sys.exit(0 if ok else 1)'
}

osd_up() {
  timeout 5 ceph -c "$1/ceph.conf" osd dump -f json 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["osds"][0]["up"] == 1 else 1)'
}

stop_daemon() { # stop_daemon DIR NAME: SIGTERM, then wait (bounded) for the process to go
  local pidf="$1/run/$2.pid" pid
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || { rm -f "$pidf"; return 0; }
  local deadline=$((SECONDS + 15))
  while [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.05
  done
  rm -f "$pidf"
}

start_osd() {
  local dir=$1
  ceph-osd -c "$dir/ceph.conf" -i 0 2>/dev/null || die "ceph-osd failed to start (see $dir/log/osd.0.log)"
  wait_for 60 "the OSD to come up" osd_up "$dir"
}

case "$cmd" in
start)
  for t in ceph-mon ceph-mgr ceph-osd ceph monmaptool ceph-authtool; do
    command -v "$t" >/dev/null || die "$t is not installed (apt-get install ceph-mon ceph-osd ceph-mgr ceph-common)"
  done
  dir=${2:-$(mktemp -d /tmp/storvisor-ceph.XXXXXX)}
  mkdir -p "$dir"/{run,log,mon,mgr,osd0}
  dir=$(cd "$dir" && pwd)
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  port=$(free_port)
  cat > "$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
public addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
paxos propose interval = 0.1
mgr initial modules =
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
keyring = $dir/keyring
[mon]
mon data = $dir/mon
mon data avail warn = 1
mon data avail crit = 0
[mgr]
mgr data = $dir/mgr
; the always-on modules load (health is ERR without them); the rest never do: ~10 s and 300 MB less
mgr disabled modules = alerts,dashboard,diskprediction_local,influx,insights,iostat,k8sevents,localpool,mirroring,nfs,osd_perf_query,osd_support,prometheus,restful,rook,cephadm,selftest,snap_schedule,stats,telegraf,test_orchestrator,zabbix
[osd]
osd data = $dir/osd0
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd memory target = 536870912
osd max object name len = 256
osd max object namespace len = 64
[client]
rbd cache = false
EOF
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$port]" --fsid "$fsid" "$dir/monmap" >/dev/null
  ceph-mon -c "$dir/ceph.conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null 2>&1 || die "ceph-mon --mkfs failed"
  ceph-mon -c "$dir/ceph.conf" -i a 2>/dev/null || die "ceph-mon failed to start (see $dir/log/mon.a.log)"
  ceph-mgr -c "$dir/ceph.conf" -i x 2>/dev/null || die "ceph-mgr failed to start (see $dir/log/mgr.x.log)"
  uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  id=$(timeout 30 ceph -c "$dir/ceph.conf" osd new "$uuid") || die "ceph osd new failed (is the mon up? $dir/log/mon.a.log)"
  [ "$id" = 0 ] || die "expected osd id 0, got $id"
  # The pool needs only the mon; created while the OSD formats its store.
  ceph -c "$dir/ceph.conf" osd pool create rbd 8 8 >/dev/null 2>&1 || die "creating pool rbd failed"
  ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" >/dev/null 2>&1 || die "ceph-osd --mkfs failed (see $dir/log/osd.0.log)"
  ceph-osd -c "$dir/ceph.conf" -i 0 2>/dev/null || die "ceph-osd failed to start (see $dir/log/osd.0.log)"
  # rbd (C++, quick to start, unlike the python ceph CLI) tags the pool for RBD once the OSD serves it.
  timeout 60 rbd -c "$dir/ceph.conf" pool init rbd || die "rbd pool init failed (see $dir/log/osd.0.log)"
  wait_for 60 "HEALTH_OK, 1 OSD up and an active mgr" ready "$dir"
  echo "$dir/ceph.conf"
  ;;
wait)
  [ -n "${2:-}" ] || die "usage: $0 wait DIR"
  wait_for 60 "HEALTH_OK, 1 OSD up and an active mgr" ready "$2"
  ;;
stop-osd)
  [ -n "${2:-}" ] || die "usage: $0 stop-osd DIR"
  stop_daemon "$2" osd.0
  ;;
start-osd)
  [ -n "${2:-}" ] || die "usage: $0 start-osd DIR"
  start_osd "$2"
  ;;
stop)
  dir=${2:-}
  [ -n "$dir" ] && [ -f "$dir/ceph.conf" ] || die "usage: $0 stop DIR (a directory made by start)"
  stop_daemon "$dir" osd.0
  stop_daemon "$dir" mgr.x
  stop_daemon "$dir" mon.a
  rm -rf "$dir"
  ;;
*)
  die "unknown command '$cmd'"
  ;;
esac
