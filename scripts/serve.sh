#!/usr/bin/env bash
# scripts/serve.sh — install what is missing, build, and serve an untorn device.
# Usage: scripts/serve.sh [--config FILE] [--unix PATH] [--tcp HOST:PORT] [--no-tcp]
#          [--tls-psk FILE | --tls-certificates DIR] [--tls require|on] [--readonly]
#          [--nbdkit-option OPT]... [key=value...]
# Defaults: conf/default.yaml, an 8G sparse image untorn-disk.img beside the repo, a unix
# socket untorn.sock beside the repo and TCP on 127.0.0.1:10809 (loopback only; pass
# --tcp 0.0.0.0:10809 to serve other hosts, with TLS). --tls-psk/--tls-certificates pass
# nbdkit's own TLS options (--tls require unless --tls on is given); --readonly is nbdkit
# -r; --nbdkit-option passes any other nbdkit option (e.g. --nbdkit-option=--filter=ip).
# Runs in the foreground; Ctrl-C stops it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
beside=$(dirname "$repo")

config="$repo/conf/default.yaml"
unix_sock="$beside/untorn.sock"
tcp="127.0.0.1:10809"
image="$beside/untorn-disk.img"
keys=() nbdkit_opts=() tls="" tls_psk="" tls_certs="" readonly=""
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$(realpath "$2"); image=""; shift 2 ;;
    --unix) unix_sock=$2; shift 2 ;;
    --tcp) tcp=$2; shift 2 ;;
    --no-tcp) tcp=""; shift ;;
    --tls-psk) tls_psk=$(realpath "$2"); shift 2 ;;
    --tls-certificates) tls_certs=$(realpath "$2"); shift 2 ;;
    --tls) tls=$2; shift 2 ;;
    --readonly) nbdkit_opts+=(-r); readonly=1; shift ;;
    --nbdkit-option=*) nbdkit_opts+=("${1#--nbdkit-option=}"); shift ;;
    --nbdkit-option) nbdkit_opts+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *=*) keys+=("$1")
         [[ $1 == backing.path=* ]] && image=""
         # An RBD image has a size of its own: the default config's 8G is not asked for.
         [[ $1 == backing.rbd=* ]] && { image=""; rbd_size=${rbd_size:-0}; }
         [[ $1 == backing.size=* ]] && rbd_size=given
         shift ;;
    *) echo "serve.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

case $tls in
  ""|require|on) ;;
  *) echo "serve.sh: --tls wants require or on, got '$tls'" >&2; exit 2 ;;
esac
if [ -n "$tls_psk" ] && [ -n "$tls_certs" ]; then
  echo "serve.sh: give --tls-psk or --tls-certificates, not both" >&2; exit 2
fi
[ -z "$tls_psk" ] || [ -r "$tls_psk" ] || { echo "serve.sh: --tls-psk: cannot read $tls_psk" >&2; exit 2; }
[ -z "$tls_certs" ] || [ -r "$tls_certs/server-cert.pem" ] || {
  echo "serve.sh: --tls-certificates: $tls_certs has no readable server-cert.pem (see README, TLS)" >&2; exit 2; }
if [ -n "$tls_psk$tls_certs" ]; then
  nbdkit_opts+=("--tls=${tls:-require}")
  [ -n "$tls_psk" ] && nbdkit_opts+=("--tls-psk=$tls_psk")
  [ -n "$tls_certs" ] && nbdkit_opts+=("--tls-certificates=$tls_certs")
elif [ -n "$tls" ]; then
  echo "serve.sh: --tls $tls needs --tls-psk FILE or --tls-certificates DIR" >&2; exit 2
fi
tcp_host=${tcp%:*}; tcp_host=${tcp_host#[}; tcp_host=${tcp_host%]}
tls_given_raw=0
for o in "${nbdkit_opts[@]}"; do [[ $o == --tls=require ]] && tls_given_raw=1; done
if [ -n "$tcp" ] && ! [[ $tcp_host == 127.* || $tcp_host == ::1 || $tcp_host == localhost ]]; then
  if [ -z "$tls_psk$tls_certs" ] && [ $tls_given_raw = 0 ]; then
    echo "serve.sh: WARNING: serving $tcp beyond loopback WITHOUT TLS: anyone who can reach it" >&2
    echo "serve.sh: WARNING: can read and overwrite the disk. Use --tls-psk FILE (README, TLS)." >&2
  elif [ "$tls" = on ]; then
    echo "serve.sh: WARNING: --tls on also serves plaintext clients on $tcp; use --tls require" >&2
  fi
fi

"$repo/scripts/deps.sh" build
if [ ! -f "$repo/build/build.ninja" ]; then meson setup "$repo/build" >/dev/null; fi
ninja -C "$repo/build" plugin/nbdkit-untorn-plugin.so tools/untorn-listen tools/untorn-config >/dev/null

args=("config=$config")
[ -n "$image" ] && args+=("backing.path=$image")
[ "${rbd_size:-}" = 0 ] && args+=("backing.size=0")
args+=("${keys[@]}")
# Validate first (same loader as the plugin) and derive the QEMU options from L and A.
qemu_args=$("$repo/build/tools/untorn-config" --qemu-nvme-args untorn0 "${args[@]}")
listen=(--unix "$unix_sock")
[ -n "$tcp" ] && listen+=(--tcp "$tcp")

ready=$(mktemp -u "${TMPDIR:-/tmp}/untorn-ready.XXXXXX")
"$repo/build/tools/untorn-listen" "${listen[@]}" --ready-file "$ready" -- \
  nbdkit -f "${nbdkit_opts[@]}" "$repo/build/plugin/nbdkit-untorn-plugin.so" "${args[@]}" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$ready"' EXIT
trap 'exit 130' INT TERM
while [ ! -f "$ready" ]; do
  kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }
  sleep 0.1
done
uri_unix="nbd+unix:///?socket=$unix_sock"
tls_uri="" tls_object=""
if [ -n "$tls_psk" ]; then
  user=$(head -1 "$tls_psk" | cut -d: -f1)
  uri_unix="nbds+unix://$user@/?socket=$unix_sock&tls-psk-file=$tls_psk"
  tls_uri="nbds://$user@ADDR/?tls-psk-file=$tls_psk"
  tls_object="-object tls-creds-psk,id=tls0,endpoint=client,dir=$(dirname "$tls_psk"),username=$user"
elif [ -n "$tls_certs" ]; then
  uri_unix="nbds+unix:///?socket=$unix_sock&tls-certificates=CLIENT-DIR"
  tls_uri="nbds://ADDR/?tls-certificates=CLIENT-DIR"
  tls_object="-object tls-creds-x509,id=tls0,endpoint=client,dir=CLIENT-DIR"
fi
# The sockets listen before nbdkit starts; one NBD handshake proves nbdkit is serving.
probe=$uri_unix
[ -n "$tls_certs" ] && probe=""   # the client's certificates are not ours to know
if [ -n "$probe" ] && ! nbdinfo --size "$probe" >/dev/null 2>&1; then
  kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }
  echo "serve.sh: warning: nbdkit is running but did not answer nbdinfo" >&2
fi

echo "untorn is serving ${image:-the configured backing file} (config: $config)"
while read -r kind addr; do
  case $kind in
    unix) echo "  unix socket: $uri_unix" ;;
    tcp) if [ -n "$tls_uri" ]; then echo "  tcp:         ${tls_uri/ADDR/$addr}"; else echo "  tcp:         nbd://$addr"; fi ;;
  esac
done < "$ready"
rm -f "$ready"
if [[ $qemu_args == *atomic.nawupf* ]]; then
  ns_note="atomic limits on the controller and the namespace: Linux 6.x and 7.x guests see them"
else
  ns_note="controller-level atomic limits only (this QEMU has no nvme-ns atomic.nawupf): Linux 6.x
   guests see them, Linux 7.x guests read only the namespace's and need QEMU 11
   (vm-images/qemu11.sh prints one; untorn-config --qemu-nvme-args ... --qemu THAT)"
fi
blockdev=$("$repo/build/tools/untorn-config" --qemu-blockdev untorn0 "$unix_sock" ${tls_object:+--tls-creds tls0} ${readonly:+--read-only})
cat <<EOT

Try:
  nbdinfo '$uri_unix'
  nbdcopy my-file.img '$uri_unix'          # copy a file in
  nbdcopy '$uri_unix' copy.img             # and back out
  qemu-system-x86_64 ... ${tls_object:+$tls_object \\
      }$blockdev \\
      $qemu_args
  (reconnect-delay: the guest waits up to 30 s for a restarted server instead of failing I/O)
  ($ns_note)
Ctrl-C stops the server.
EOT
wait $pid
