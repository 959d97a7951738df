#!/usr/bin/env bash
# scripts/ceph_cluster.sh — a throwaway one-mon, one-osd Ceph cluster for tests and for a
# first try of untorn over RBD. Debian's packages only (no cephadm, no systemd, no mgr).
#
# Usage:
#   scripts/ceph_cluster.sh start DIR [--bluestore] [--image POOL/NAME --size SIZE] [--owner PID]
#   scripts/ceph_cluster.sh stop DIR
#   scripts/ceph_cluster.sh restart-osd DIR      (kill -9 the osd, start it again)
#   scripts/ceph_cluster.sh kill-osd DIR | start-osd DIR
#
# start makes DIR (which must be empty or absent) and runs the cluster in it: the mon on
# 127.0.0.1 at a free port, one osd (memstore by default: fast, and it loses everything
# when the osd dies; --bluestore: a sparse 4 GiB file beside the osd's data dir, for tests
# that kill the osd), pool size 1, cephx off. DIR/ceph.conf is the configuration a client
# gives as backing.ceph_conf. With --image, the pool is made (and initialised for RBD)
# and an image of SIZE created in it. start returns when a real write through librbd
# (rbd bench) has succeeded: without a mgr, `ceph -s` says nothing useful about that.
# stop kills every daemon started from DIR and removes DIR. With --owner, a watchdog stops
# the cluster once process PID is gone (a test killed by its timeout leaves no daemons);
# a start that fails part way stops what it started.
# Needs: ceph-mon ceph-osd ceph-common (scripts/deps.sh test installs them).
set -euo pipefail

die() { echo "ceph_cluster.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: ceph_cluster.sh start|stop|kill-osd|start-osd|restart-osd DIR [options]"
cmd=$1 dir=$2; shift 2
# One spelling of DIR for every command: the daemons are known by DIR/ceph.conf on their
# command lines (the --owner watchdog matches it).
if [ "$cmd" != start ] && [ -d "$dir" ]; then dir=$(cd "$dir" && pwd); fi

for tool in ceph-mon ceph-osd ceph rbd; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/deps.sh test (Debian's ceph-mon, ceph-osd, ceph-common)"
done

conf() { echo "$dir/ceph.conf"; }
ceph_cli() { timeout 60 ceph --conf "$(conf)" "$@"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits up to $2 seconds for a command to succeed; progress on stderr.
wait_for() {
  local what=$1 limit=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -lt "$limit" ] || die "$what: not ready after ${limit}s (logs in $dir/log)"
    sleep 0.5
  done
}

start_osd() {
  ceph-osd --conf "$(conf)" -i 0 || die "ceph-osd did not start (log: $dir/log/ceph-osd.0.log)"
}

# After a restart: the mon keeps a killed lone osd "up" at its old address, so what shows
# the new one serving is an answer from it.
wait_osd_serving() {
  wait_for "the restarted osd" 60 timeout 10 ceph --conf "$(conf)" tell osd.0 version
}

# Whether process $1 is a daemon of this cluster.
ours() { grep -qaF -- "$dir/ceph.conf" "/proc/$1/cmdline" 2>/dev/null; }

kill_osd() {
  local pidfile=$dir/run/osd.0.pid
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  ours "$pid" || { rm -f "$pidfile"; return 0; }
  kill -9 "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$pidfile"
}

case $cmd in
  start)
    objectstore=memstore image="" size=1G owner=""
    while [ $# -gt 0 ]; do
      case $1 in
        --bluestore) objectstore=bluestore; shift ;;
        --image) image=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --owner) owner=$2; shift 2 ;;
        *) die "unknown option $1" ;;
      esac
    done
    if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then die "$dir is not empty"; fi
    mkdir -p "$dir"/{run,log,mon,osd}
    dir=$(cd "$dir" && pwd)
    trap '"$0" stop "$dir"' EXIT  # a failed start stops what it started
    port=$(free_port)
    fsid=$(cat /proc/sys/kernel/random/uuid)
    cat > "$(conf)" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$cluster-\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
osd objectstore = $objectstore
memstore device bytes = 4294967296
bluestore block path = $dir/osd-block.\$id
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mount = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd op num shards = 1
osd op num threads per shard = 2
ms bind ipv6 = false
# A dead client's watch (and so its exclusive lock) lapses after 10 s, not 30.
osd client watch timeout = 10
[client]
rbd cache = false
admin socket =
log file = $dir/log/\$name.\$pid.log
EOF
    monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null
    ceph-mon --conf "$(conf)" --mkfs -i a --monmap "$dir/monmap" >/dev/null 2>&1 ||
      die "ceph-mon --mkfs failed (log: $dir/log)"
    ceph-mon --conf "$(conf)" -i a || die "ceph-mon did not start (log: $dir/log/ceph-mon.a.log)"
    wait_for "the mon" 30 ceph_cli mon stat
    osd_id=$(ceph_cli osd create)
    [ "$osd_id" = 0 ] || die "expected osd id 0, got $osd_id"
    mkdir -p "$dir/osd/ceph-0"
    ceph-osd --conf "$(conf)" -i 0 --mkfs >/dev/null 2>&1 || die "ceph-osd --mkfs failed (log: $dir/log)"
    ceph_cli osd crush add osd.0 1.0 root=default >/dev/null 2>&1
    start_osd
    wait_for "the osd" 60 sh -c "ceph --conf '$(conf)' osd dump | grep -q '^osd.0 up'"
    if [ -n "$image" ]; then
      pool=${image%%/*} name=${image#*/}
      ceph_cli osd pool create "$pool" 8 8 >/dev/null 2>&1
      timeout 60 rbd --conf "$(conf)" pool init "$pool"
      timeout 60 rbd --conf "$(conf)" create --size "$size" "$pool/$name"
      wait_for "a first librbd write" 60 timeout 30 rbd --conf "$(conf)" bench --io-type write \
        --io-size 4096 --io-total 4096 "$pool/$name"
      timeout 60 rbd --conf "$(conf)" rm "$pool/$name" >/dev/null 2>&1
      timeout 60 rbd --conf "$(conf)" create --size "$size" "$pool/$name"
    fi
    trap - EXIT
    if [ -n "$owner" ]; then
      # Polls: nothing waits on this; it only cleans up after an owner that died. It keeps
      # the daemons' pids itself: an owner that removed DIR took the pid files with it
      # (a daemon of this cluster is known by DIR/ceph.conf on its command line).
      (set +e
       pids=""
       while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do
         for f in "$dir"/run/*.pid; do
           [ -f "$f" ] && pids="$pids $(cat "$f" 2>/dev/null)"  # only ever added to
         done
         sleep 2
       done
       "$0" stop "$dir"
       for pid in $pids; do
         if ours "$pid"; then kill -9 "$pid" 2>/dev/null; fi
       done) </dev/null >/dev/null 2>&1 &
    fi
    echo "$dir/ceph.conf"
    ;;
  stop)
    [ -d "$dir" ] || exit 0
    for pidfile in "$dir"/run/*.pid; do
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      ours "$pid" || continue  # a stale pid file: that pid may be another process now
      kill -9 "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    rm -rf "$dir"
    ;;
  kill-osd) kill_osd ;;
  start-osd) start_osd; wait_osd_serving ;;
  restart-osd) kill_osd; start_osd; wait_osd_serving ;;
  *) die "unknown command $cmd" ;;
esac
