#!/usr/bin/env bash
# tests/bench/compare.sh — one benchmark: every section (4K random writes and reads on 1
# and 4 connections, 64K atomic-eligible writes, writethrough, uncached 1M) against every
# anchor (nbdkit memory; nbdkit file plain, cache=none, fua filter, cache filter;
# qemu-storage-daemon page cache, O_DIRECT, writethrough; fio on a file) in the same run.
# IOPS, MiB/s, p50/p99 latency from fio's JSON, peak RSS; medians of interleaved rounds;
# TSV and chart in OUT. The driver is compare_bench.py; see it for the sections.
# Usage: tests/bench/compare.sh [--rounds N] [--runtime S] [--only SECTION[,...]]
#                               [--anchors A[,...]] [--out DIR] [--build DIR] [--quick]
set -euo pipefail
source "$(dirname "$0")/bench_lib.sh"  # sets $repo
build=$(bench_build_dir "$@")
"$repo/scripts/deps.sh" bench
# qemu-storage-daemon's rows are skipped, with the reason, where it cannot be installed.
"$repo/vm-images/setup-host.sh" --qemu-utils >/dev/null ||
  echo "compare.sh: qemu-utils (qemu-storage-daemon) could not be installed; its rows will be skipped" >&2
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" plugin/nbdkit-untorn-plugin.so tools/untorn-listen >/dev/null
exec python3 "$repo/tests/bench/compare_bench.py" --build "$build" "$@"
