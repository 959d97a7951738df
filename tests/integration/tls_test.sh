#!/usr/bin/env bash
# TLS as a user sets it up (README "TLS and access control"): nbdkit's own --tls options
# in front of untorn, over TCP on loopback.
#  - PSK (a key file made by psktool): a TLS client is served byte for byte (nbdcopy in
#    and out, compared with cmp); a plaintext client is refused; a wrong key is refused.
#  - X.509 (a CA, a server and a client certificate made here by certtool): served byte
#    for byte; a client that does not trust the CA is refused.
# Needs UNTORN_PLUGIN, UNTORN_LISTEN (meson); psktool and certtool (gnutls-bin, installed
# by scripts/deps.sh). Exit 77 (skipped, with the reason) only if those are missing.
set -euo pipefail
for tool in psktool certtool nbdcopy nbdinfo; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is not installed (apt-get install gnutls-bin libnbd-bin)"; exit 77; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/untorn-tls-test.XXXXXX")
srv_pid=""
# shellcheck source=../support/stop_server.sh
source "$(dirname "$0")/../support/stop_server.sh"
stop_server() {
  local pid=$srv_pid
  srv_pid=""
  [ -z "$pid" ] || stop_within "$pid" nbdkit || fail "nbdkit did not stop cleanly"
}
cleanup() { if [ -n "$srv_pid" ]; then kill -KILL "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$dir/nbdkit.log" ] && sed 's/^/  nbdkit: /' "$dir/nbdkit.log" >&2; exit 1; }

preload=()
[ -n "${UNTORN_NBDKIT_PRELOAD:-}" ] && preload=(env "LD_PRELOAD=$UNTORN_NBDKIT_PRELOAD")
# shellcheck disable=SC2206
[ -n "${UNTORN_NBDKIT_ENV:-}" ] && preload=(env ${UNTORN_NBDKIT_ENV} "${preload[@]:1}")

addr=""
serve() {  # nbdkit options...; sets addr (HOST:PORT) once it listens
  coproc SRV { exec "$UNTORN_LISTEN" --tcp 127.0.0.1:0 -- "${preload[@]}" nbdkit -f --exit-with-parent \
    "$@" "$UNTORN_PLUGIN" backing.path="$dir/disk.img" backing.size=16M 2>>"$dir/nbdkit.log"; }
  srv_pid=$SRV_PID
  read -r _ addr <&"${SRV[0]}" || fail "untorn-listen printed nothing"
}
round_trip() {  # URI label: copies in and out, byte for byte
  head -c 4194304 /dev/urandom > "$dir/in.bin"
  nbdcopy "$dir/in.bin" "$1" || fail "$2: nbdcopy in"
  rm -f "$dir/out.bin"
  nbdcopy "$1" "$dir/out.bin" || fail "$2: nbdcopy out"
  cmp -n 4194304 "$dir/in.bin" "$dir/out.bin" || fail "$2: data differs after the round trip"
  echo "ok: $2 served byte for byte"
}
refused() {  # URI label expected-message
  if nbdinfo "$1" >"$dir/client.out" 2>&1; then fail "$2: the client was served"; fi
  tr '\n' ' ' < "$dir/client.out" | grep -qE "$3" || fail "$2: unexpected message: $(cat "$dir/client.out")"
  echo "ok: $2 refused ($(head -c 160 "$dir/client.out" | tr '\n' ' '))"
}

# ---- PSK ----
psktool -u alice -p "$dir/keys.psk" >/dev/null
grep -q '^alice:' "$dir/keys.psk" || fail "psktool wrote no key"
psktool -u alice -p "$dir/wrong.psk" >/dev/null
serve --tls=require --tls-psk="$dir/keys.psk"
round_trip "nbds://alice@$addr/?tls-psk-file=$dir/keys.psk" "PSK client"
# nbdkit answers a plaintext NBD_OPT_GO with NBD_REP_ERR_TLS_REQD (libnbd: ENOTSUP).
refused "nbd://$addr/" "plaintext client of a --tls=require server" "opt_go request: Operation not supported"
grep -q "without TLS" "$dir/client.out" || fail "the plaintext client did not negotiate without TLS"
refused "nbds://alice@$addr/?tls-psk-file=$dir/wrong.psk" "client with the wrong key" "gnutls_handshake"
stop_server

# ---- X.509: a CA, a server and a client certificate ----
mkdir -p "$dir/server" "$dir/client" "$dir/other"
ct() { certtool "$@" >/dev/null 2>&1 || fail "certtool $*"; }
ct --generate-privkey --outfile "$dir/ca-key.pem"
printf 'cn = untorn test CA\nca\ncert_signing_key\nexpiration_days = 2\n' > "$dir/ca.info"
ct --generate-self-signed --load-privkey "$dir/ca-key.pem" --template "$dir/ca.info" --outfile "$dir/server/ca-cert.pem"
cp "$dir/server/ca-cert.pem" "$dir/client/ca-cert.pem"
ct --generate-privkey --outfile "$dir/server/server-key.pem"
printf 'organization = untorn test\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' > "$dir/server.info"
ct --generate-certificate --load-ca-certificate "$dir/server/ca-cert.pem" --load-ca-privkey "$dir/ca-key.pem" \
  --load-privkey "$dir/server/server-key.pem" --template "$dir/server.info" --outfile "$dir/server/server-cert.pem"
ct --generate-privkey --outfile "$dir/client/client-key.pem"
printf 'organization = untorn test\ncn = client\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 2\n' > "$dir/client.info"
ct --generate-certificate --load-ca-certificate "$dir/client/ca-cert.pem" --load-ca-privkey "$dir/ca-key.pem" \
  --load-privkey "$dir/client/client-key.pem" --template "$dir/client.info" --outfile "$dir/client/client-cert.pem"
# A client that trusts another CA only.
ct --generate-privkey --outfile "$dir/other-ca-key.pem"
ct --generate-self-signed --load-privkey "$dir/other-ca-key.pem" --template "$dir/ca.info" --outfile "$dir/other/ca-cert.pem"
cp "$dir/client/client-key.pem" "$dir/client/client-cert.pem" "$dir/other/"

serve --tls=require --tls-certificates="$dir/server" --tls-verify-peer
round_trip "nbds://$addr/?tls-certificates=$dir/client" "X.509 client"
refused "nbd://$addr/" "plaintext client of an X.509 server" "opt_go request: Operation not supported"
refused "nbds://$addr/?tls-certificates=$dir/other" "client that does not trust the server's CA" "gnutls_handshake: Error in the certificate verification"
stop_server
echo "tls: ok"
