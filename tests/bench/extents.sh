#!/usr/bin/env bash
# tests/bench/extents.sh — block status and sparse images: untorn against nbdkit file,
# nbdkit file with the cacheextents filter and qemu-storage-daemon (QEMU 10's qemu-utils
# from bookworm-backports, installed the way vm-images/setup-host.sh installs QEMU), all
# started by this script, same run. On sparse images of 1,000, 10,000 and 100,000 data
# extents: qemu-img map cold and warm, a REQ_ONE block-status walk (queries/s), nbdinfo
# --map and qemu-img convert; then reading a never-written image against nbdkit memory
# (fio JSON: MiB/s, p50/p99). Every map is checked against nbdkit file's. The driver is
# extents_bench.py; see it for the columns.
# Usage: tests/bench/extents.sh [--extents "1000 10000 100000"] [--size GiB] [--rounds N]
#                               [--read-size GiB] [--out DIR] [--quick]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
"$repo/scripts/deps.sh" bench
"$repo/vm-images/setup-host.sh" --qemu-utils >/dev/null
[ -f "$repo/build/build.ninja" ] || meson setup "$repo/build" >/dev/null
ninja -C "$repo/build" plugin/nbdkit-untorn-plugin.so tools/untorn-listen tests/status_walk >/dev/null
exec python3 "$repo/tests/bench/extents_bench.py" "$@"
