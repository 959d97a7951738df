#!/usr/bin/env bash
# What a user does: serve a device on a unix socket and TCP at once (untorn-listen), copy
# a file in with nbdcopy over one and back out over the other, byte for byte; check
# that untorn-config derives QEMU's options and refuses a bad config with its message.
# Needs UNTORN_PLUGIN, UNTORN_LISTEN, UNTORN_CONFIG (set by meson).
set -euo pipefail
dir=$(mktemp -d "${TMPDIR:-/tmp}/untorn-serve-test.XXXXXX")
srv_pid=""
cleanup() {
  if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$dir/nbdkit.log" ] && sed 's/^/  nbdkit: /' "$dir/nbdkit.log" >&2; exit 1; }

preload=()
[ -n "${UNTORN_NBDKIT_PRELOAD:-}" ] && preload=(env "LD_PRELOAD=$UNTORN_NBDKIT_PRELOAD")
# shellcheck disable=SC2206
[ -n "${UNTORN_NBDKIT_ENV:-}" ] && preload=(env ${UNTORN_NBDKIT_ENV} "${preload[@]:1}")

# untorn-listen prints one line per socket once it listens, then becomes nbdkit: reading
# those lines is the synchronisation.
coproc SRV { exec "$UNTORN_LISTEN" --unix "$dir/s.sock" --tcp 127.0.0.1:0 -- \
  "${preload[@]}" nbdkit -f --exit-with-parent "$UNTORN_PLUGIN" \
  backing.path="$dir/disk.img" backing.size=32M 2>"$dir/nbdkit.log"; }
srv_pid=$SRV_PID
read -r kind1 addr1 <&"${SRV[0]}" || fail "untorn-listen printed nothing"
read -r kind2 addr2 <&"${SRV[0]}" || fail "untorn-listen printed one line only"
[ "$kind1" = unix ] && [ "$addr1" = "$dir/s.sock" ] || fail "unexpected first line: $kind1 $addr1"
[ "$kind2" = tcp ] && [[ $addr2 == 127.0.0.1:[1-9]* ]] || fail "unexpected second line: $kind2 $addr2"

head -c 20475904 /dev/urandom > "$dir/in.bin"   # 4999 blocks: a multiple of L, not of A
nbdcopy "$dir/in.bin" "nbd+unix:///?socket=$dir/s.sock" || fail "nbdcopy in over unix"
nbdcopy "nbd://$addr2" "$dir/out.bin" || fail "nbdcopy out over tcp"
[ "$(stat -c %s "$dir/out.bin")" = 33554432 ] || fail "copied-out size is not the device size"
cmp -n 20475904 "$dir/in.bin" "$dir/out.bin" || fail "data differs after the round trip"
cmp -n $((33554432 - 20475904)) -i 20475904:0 "$dir/out.bin" /dev/zero || fail "tail not zero"
nbdinfo "nbd://$addr2" | grep -q 'description: untorn: logical_block_size=4096 atomic_write_unit_min=4096 atomic_write_unit_max=65536' \
  || fail "export description missing over tcp"

kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
cmp -n 20475904 "$dir/in.bin" "$dir/disk.img" || fail "backing file does not hold the data"

# A socket path that a live server listens on is never taken over. (The live listener
# here is untorn-listen running cat, not nbdkit: nbdkit 1.32 under an ASan preload can
# hang at exit after a client hangs up mid-handshake, which this probe does.)
coproc BUSY { exec "$UNTORN_LISTEN" --unix "$dir/busy.sock" -- cat; }
srv_pid=$BUSY_PID
read -r _ _ <&"${BUSY[0]}" || fail "busy listener printed nothing"
if "$UNTORN_LISTEN" --unix "$dir/busy.sock" -- true 2>"$dir/second.err"; then fail "second listener accepted"; fi
grep -q "is in use by a running server" "$dir/second.err" || fail "second listener message: $(cat "$dir/second.err")"
kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=""
# ...while a stale socket left by a dead server is replaced.
"$UNTORN_LISTEN" --unix "$dir/busy.sock" -- true >/dev/null || fail "stale socket not replaced"

args=$("$UNTORN_CONFIG" --qemu-nvme-args n0 --ns-atomic off backing.path=/x device.logical_block_size=512 device.atomic_write_unit_max=16K)
[ "$args" = "-device nvme,id=nvme0,serial=untorn-nvme0,atomic.dn=off,atomic.awun=31,atomic.awupf=31 -device nvme-ns,drive=n0,bus=nvme0,nsid=1,logical_block_size=512,physical_block_size=512" ] \
  || fail "qemu args: $args"
args=$("$UNTORN_CONFIG" --qemu-nvme-args n1 --id nvme1 --nsid 2 --ns-atomic off backing.path=/x)
[ "$args" = "-device nvme,id=nvme1,serial=untorn-nvme1,atomic.dn=off,atomic.awun=15,atomic.awupf=15 -device nvme-ns,drive=n1,bus=nvme1,nsid=2,logical_block_size=4096,physical_block_size=4096" ] \
  || fail "qemu args of a second disk: $args"
# Per-namespace atomic limits (QEMU 11's nvme-ns atomic.nawun/nawupf, which Linux 7.x
# guests require): printed when asked for, or when the QEMU given has them.
ctrl="-device nvme,id=nvme0,serial=untorn-nvme0,atomic.dn=off,atomic.awun=15,atomic.awupf=15 -device nvme-ns,drive=n0,bus=nvme0,nsid=1,logical_block_size=4096,physical_block_size=4096"
args=$("$UNTORN_CONFIG" --qemu-nvme-args n0 --ns-atomic on backing.path=/x)
[ "$args" = "$ctrl,atomic.nawun=15,atomic.nawupf=15" ] || fail "qemu args with --ns-atomic on: $args"
fake_qemu() {  # NAME PROPERTY...: a QEMU that lists these nvme-ns properties
  { echo '#!/bin/sh'; echo '[ "$1 $2" = "-device nvme-ns,help" ] || exit 3'; echo 'echo "nvme-ns options:"'
    echo 'echo "  logical_block_size=<size>"'; for p in "${@:2}"; do echo "echo '  $p=<uint16>'"; done; } > "$dir/$1"
  chmod +x "$dir/$1"
}
fake_qemu qemu11 atomic.nawun atomic.nawupf; fake_qemu qemu10
args=$("$UNTORN_CONFIG" --qemu-nvme-args n0 --qemu "$dir/qemu11" backing.path=/x 2>"$dir/q.err")
[ "$args" = "$ctrl,atomic.nawun=15,atomic.nawupf=15" ] || fail "qemu args for a QEMU with nawupf: $args"
[ ! -s "$dir/q.err" ] || fail "untorn-config complained about a QEMU with nawupf: $(cat "$dir/q.err")"
args=$("$UNTORN_CONFIG" --qemu-nvme-args n0 --qemu "$dir/qemu10" backing.path=/x 2>"$dir/q.err")
[ "$args" = "$ctrl" ] || fail "qemu args for a QEMU without nawupf: $args"
grep -q "has no per-namespace atomic limits .*Linux 7.x guests only 4096 bytes" "$dir/q.err" || fail "QEMU 10 note: $(cat "$dir/q.err")"
args=$("$UNTORN_CONFIG" --qemu-nvme-args n0 --qemu "$dir/missing-qemu" backing.path=/x 2>"$dir/q.err")
[ "$args" = "$ctrl" ] || fail "qemu args when QEMU cannot run: $args"
grep -q "warning: cannot run '$dir/missing-qemu': No such file or directory; printing the controller-level" "$dir/q.err" \
  || fail "missing QEMU warning: $(cat "$dir/q.err")"
if "$UNTORN_CONFIG" --qemu-nvme-args n0 --ns-atomic maybe backing.path=/x 2>"$dir/q.err"; then fail "--ns-atomic maybe accepted"; fi
grep -q "ns-atomic wants on or off" "$dir/q.err" || fail "--ns-atomic message: $(cat "$dir/q.err")"
args=$("$UNTORN_CONFIG" --qemu-blockdev n0 /run/untorn/d.sock)
[ "$args" = "-blockdev driver=nbd,node-name=n0,server.type=unix,server.path=/run/untorn/d.sock,reconnect-delay=30,cache.direct=on,discard=unmap" ] \
  || fail "qemu blockdev: $args"
args=$("$UNTORN_CONFIG" --qemu-blockdev n0 192.0.2.7:10809 --tls-creds tls0 --reconnect-delay 10)
[ "$args" = "-blockdev driver=nbd,node-name=n0,server.type=inet,server.host=192.0.2.7,server.port=10809,tls-creds=tls0,reconnect-delay=10,cache.direct=on,discard=unmap" ] \
  || fail "qemu blockdev over TLS: $args"
if "$UNTORN_CONFIG" backing.path=/x device.atomic_write_unit_max=2K 2>"$dir/cfg.err"; then fail "bad config accepted"; fi
grep -q "device.atomic_write_unit_max: must be at least device.logical_block_size" "$dir/cfg.err" \
  || fail "untorn-config message: $(cat "$dir/cfg.err")"
echo "serve round trip: ok"
