#!/usr/bin/env bash
# scripts/serve.sh — install what is missing, build, and serve an untorn device.
# Usage: scripts/serve.sh [--config FILE] [--unix PATH] [--tcp HOST:PORT] [--no-tcp] [key=value...]
# Defaults: conf/default.yaml, an 8G sparse image untorn-disk.img beside the repo, a unix
# socket untorn.sock beside the repo and TCP on 127.0.0.1:10809 (loopback only; pass
# --tcp 0.0.0.0:10809 to serve other hosts). Runs in the foreground; Ctrl-C stops it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
beside=$(dirname "$repo")

config="$repo/conf/default.yaml"
unix_sock="$beside/untorn.sock"
tcp="127.0.0.1:10809"
image="$beside/untorn-disk.img"
keys=()
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$(realpath "$2"); image=""; shift 2 ;;
    --unix) unix_sock=$2; shift 2 ;;
    --tcp) tcp=$2; shift 2 ;;
    --no-tcp) tcp=""; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *=*) keys+=("$1"); [[ $1 == backing.path=* ]] && image=""; shift ;;
    *) echo "serve.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

"$repo/scripts/deps.sh" build
if [ ! -f "$repo/build/build.ninja" ]; then meson setup "$repo/build" >/dev/null; fi
ninja -C "$repo/build" plugin/nbdkit-untorn-plugin.so tools/untorn-listen tools/untorn-config >/dev/null

args=("config=$config")
[ -n "$image" ] && args+=("backing.path=$image")
args+=("${keys[@]}")
# Validate first (same loader as the plugin) and derive the QEMU options from L and A.
qemu_args=$("$repo/build/tools/untorn-config" --qemu-nvme-args untorn0 "${args[@]}")
listen=(--unix "$unix_sock")
[ -n "$tcp" ] && listen+=(--tcp "$tcp")

ready=$(mktemp -u "${TMPDIR:-/tmp}/untorn-ready.XXXXXX")
"$repo/build/tools/untorn-listen" "${listen[@]}" --ready-file "$ready" -- \
  nbdkit -f "$repo/build/plugin/nbdkit-untorn-plugin.so" "${args[@]}" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$ready"' EXIT
trap 'exit 130' INT TERM
while [ ! -f "$ready" ]; do
  kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }
  sleep 0.1
done
# The sockets listen before nbdkit starts; one NBD handshake proves nbdkit is serving.
if ! nbdinfo --size "nbd+unix:///?socket=$unix_sock" >/dev/null 2>&1; then
  kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }
  echo "serve.sh: warning: nbdkit is running but did not answer nbdinfo" >&2
fi

uri_unix="nbd+unix:///?socket=$unix_sock"
echo "untorn is serving ${image:-the configured backing file} (config: $config)"
while read -r kind addr; do
  case $kind in
    unix) echo "  unix socket: $uri_unix" ;;
    tcp) echo "  tcp:         nbd://$addr" ;;
  esac
done < "$ready"
rm -f "$ready"
cat <<EOT

Try:
  nbdinfo '$uri_unix'
  nbdcopy my-file.img '$uri_unix'          # copy a file in
  nbdcopy '$uri_unix' copy.img             # and back out
  qemu-system-x86_64 ... -blockdev driver=nbd,node-name=untorn0,server.type=unix,server.path=$unix_sock,cache.direct=on,discard=unmap \\
      $qemu_args
Ctrl-C stops the server.
EOT
wait $pid
