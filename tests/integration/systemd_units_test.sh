#!/usr/bin/env bash
# contrib/systemd: the units pass `systemd-analyze verify` with no warning, and what
# untorn@.service runs serves over TLS when handed a socket the way untorn@.socket hands
# it (systemd-socket-activate: LISTEN_FDS), with its log lines on stderr (the journal)
# and a clean exit on SIGTERM (systemctl stop).
# Needs UNTORN_PLUGIN, UNTORN_SOURCE_ROOT; systemd-analyze and systemd-socket-activate
# (systemd), psktool (gnutls-bin).
set -euo pipefail
for tool in systemd-analyze systemd-socket-activate psktool nbdinfo nbdcopy; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is not installed (apt-get install systemd gnutls-bin libnbd-bin)"; exit 77; }
done
units="$UNTORN_SOURCE_ROOT/contrib/systemd"
dir=$(mktemp -d "${TMPDIR:-/tmp}/untorn-systemd-test.XXXXXX")
pid=""
cleanup() { if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$dir/service.log" ] && sed 's/^/  service: /' "$dir/service.log" >&2; exit 1; }

cp "$units/untorn@.socket" "$dir/untorn@disk0.socket"
cp "$units/untorn@.service" "$dir/untorn@disk0.service"
systemd-analyze verify --man=no "$dir/untorn@disk0.socket" "$dir/untorn@disk0.service" > "$dir/verify.txt" 2>&1 \
  || fail "systemd-analyze verify: $(cat "$dir/verify.txt")"
[ ! -s "$dir/verify.txt" ] || fail "systemd-analyze verify warned: $(cat "$dir/verify.txt")"
# A broken unit is caught (so the check above can fail).
sed 's/^Type=simple/Type=bogus/' "$units/untorn@.service" > "$dir/untorn@disk0.service"
systemd-analyze verify --man=no "$dir/untorn@disk0.service" > "$dir/verify.txt" 2>&1 || true
grep -q "Failed to parse service type" "$dir/verify.txt" || fail "verify missed a broken unit: $(cat "$dir/verify.txt")"
echo "ok: systemd-analyze verify"

# The service's ExecStart, with the plugin by path (not installed here), the instance's
# config and a TLS drop-in's options, under socket activation.
exec_start=$(sed -n 's/^ExecStart=//p' "$units/untorn@.service")
read -ra cmd <<< "${exec_start//%i/disk0}"
[ "${cmd[0]}" = /usr/bin/nbdkit ] || fail "ExecStart does not run /usr/bin/nbdkit: $exec_start"
[ -x "${cmd[0]}" ] || fail "${cmd[0]} is not installed"
cmd=("${cmd[@]/#untorn/$UNTORN_PLUGIN}")
cmd=("${cmd[@]/#config=\/etc\/untorn\/disk0.yaml/config=$dir/disk0.yaml}")
printf 'backing:\n  path: disk0.img\n  size: 16M\nstats:\n  file: disk0.stats\n' > "$dir/disk0.yaml"
psktool -u alice -p "$dir/keys.psk" >/dev/null
env_pre=()
[ -n "${UNTORN_NBDKIT_PRELOAD:-}" ] && env_pre=(env "LD_PRELOAD=$UNTORN_NBDKIT_PRELOAD")
# shellcheck disable=SC2206
[ -n "${UNTORN_NBDKIT_ENV:-}" ] && env_pre=(env ${UNTORN_NBDKIT_ENV} "${env_pre[@]:1}")
systemd-socket-activate -l "$dir/disk0.sock" -- "${env_pre[@]}" "${cmd[0]}" --tls=require \
  --tls-psk="$dir/keys.psk" "${cmd[@]:1}" > "$dir/service.log" 2>&1 &
pid=$!
# systemd-socket-activate says "Listening on ..." once the socket is bound.
for _ in $(seq 200); do grep -q "Listening on" "$dir/service.log" && break; kill -0 $pid || fail "exited"; sleep 0.05; done
grep -q "Listening on" "$dir/service.log" || fail "never listened"
uri="nbds+unix://alice@/?socket=$dir/disk0.sock&tls-psk-file=$dir/keys.psk"
head -c 1048576 /dev/urandom > "$dir/in.bin"
nbdcopy "$dir/in.bin" "$uri" || fail "nbdcopy in over TLS"
nbdcopy "$uri" "$dir/out.bin" || fail "nbdcopy out over TLS"
cmp -n 1048576 "$dir/in.bin" "$dir/out.bin" || fail "data differs"
# shellcheck source=../support/stop_server.sh
source "$(dirname "$0")/../support/stop_server.sh"
p=$pid; pid=""
stop_within "$p" "the service" || fail "the service did not exit cleanly on SIGTERM"
grep -q "nbdkit: error: info: created sparse backing file $dir/disk0.img of 16M" "$dir/service.log" \
  || fail "untorn's log line is not in the service's log"
grep -q '"final":true' "$dir/disk0.stats" || fail "no final stats line in $dir/disk0.stats"
echo "systemd units: ok (verify clean; socket-activated ExecStart served 1 MiB over TLS-PSK byte for byte)"
