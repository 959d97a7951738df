#!/usr/bin/env bash
# tests/bench/rbd.sh — untorn over Ceph RBD against qemu-storage-daemon's rbd driver, fio's
# rbd engine and nbdkit memory, on one throwaway cluster, same run: 4K and 64K random
# writes and reads, and 64K writes across object boundaries (the journal's cost). IOPS,
# MiB/s, p50/p99 from fio's JSON; medians of interleaved rounds; TSV in OUT. The driver is
# rbd_bench.py; see it for the sections and targets.
# Usage: tests/bench/rbd.sh [--rounds N] [--runtime S] [--bluestore] [--only SECTION[,...]]
#                           [--anchors A[,...]] [--out DIR] [--build DIR] [--quick]
set -euo pipefail
source "$(dirname "$0")/bench_lib.sh"  # sets $repo
build=$(bench_build_dir "$@")
"$repo/scripts/deps.sh" bench
"$repo/scripts/deps.sh" test >/dev/null  # librbd-dev and the Ceph daemons
# qemu-storage-daemon's rows are skipped, with the reason, where its rbd driver cannot be
# installed.
"$repo/vm-images/setup-host.sh" --qemu-rbd >/dev/null ||
  echo "rbd.sh: QEMU's rbd driver (qemu-block-extra) could not be installed; its rows will be skipped" >&2
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" plugin/nbdkit-untorn-plugin.so tools/untorn-listen >/dev/null
exec python3 "$repo/tests/bench/rbd_bench.py" --build "$build" "$@"
