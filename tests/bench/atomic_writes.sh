#!/usr/bin/env bash
# tests/bench/atomic_writes.sh — atomic-eligible 64K random writes, QD32, on untorn's
# direct path, side by side in one run:
#   untorn-journal   journal.mode=auto on this filesystem (64K > the native unit: journaled)
#   untorn-never     journal.mode=never: UNSAFE, writes can tear (benchmark only)
#   untorn-xfs-rwf   the backing file on a loop-mounted XFS, where RWF_ATOMIC covers 64K
#                    (needs root, mkfs.xfs and Linux 6.16+; skipped with a message otherwise)
#   nbdkit-file      the anchor: nbdkit's file plugin (page cache, no atomicity)
# Usage: tests/bench/atomic_writes.sh [--runtime S] [--size SIZE] [--bs BS]
set -euo pipefail
# shellcheck source=tests/bench/bench_lib.sh
source "$(dirname "$0")/bench_lib.sh"
runtime=20 size=1G bs=64k
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) runtime=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --bs) bs=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bench_setup
xfs_mnt=""
bench_extra_cleanup() { if [ -n "$xfs_mnt" ]; then umount "$xfs_mnt" 2>/dev/null || true; fi; }
fio_args=(--rw=randwrite --bs="$bs" --iodepth=32 --size="$size" --time_based --runtime="$runtime"
          --ramp_time=2 --randrepeat=1 --norandommap)
plugin="$repo/build/plugin/nbdkit-untorn-plugin.so"
echo "fio nbd engine: randwrite bs=$bs iodepth=32 size=$size runtime=${runtime}s, one connection"
bench_run untorn-journal "$plugin" backing.path="$bench_dir/j.img" backing.size="$size"
bench_run untorn-never "$plugin" backing.path="$bench_dir/n.img" backing.size="$size" \
  journal.mode=never test.unsafe_allow_journal_never=true
if [ "$(id -u)" = 0 ] && command -v mkfs.xfs >/dev/null; then
  truncate -s 4G "$bench_dir/xfs.img" && mkfs.xfs -q -f "$bench_dir/xfs.img" && mkdir -p "$bench_dir/xfs" &&
    mount -o loop "$bench_dir/xfs.img" "$bench_dir/xfs" && xfs_mnt="$bench_dir/xfs"
fi
if [ -n "$xfs_mnt" ]; then
  bench_run untorn-xfs-rwf "$plugin" backing.path="$xfs_mnt/x.img" backing.size="$size"
  grep -h "native_atomic_unit\|RWF" "$bench_dir/untorn-xfs-rwf.log" || true
else
  echo "  untorn-xfs-rwf skipped: needs root and mkfs.xfs (xfsprogs) to loop-mount an XFS image" >&2
fi
truncate -s "$size" "$bench_dir/file.img"
bench_run nbdkit-file file "$bench_dir/file.img"
bench_table untorn-journal
