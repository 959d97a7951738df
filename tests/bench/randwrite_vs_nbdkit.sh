#!/usr/bin/env bash
# tests/bench/randwrite_vs_nbdkit.sh — fio (nbd engine) random writes against untorn and,
# in the same run, nbdkit's own file and memory plugins (the anchors).
# Usage: tests/bench/randwrite_vs_nbdkit.sh [--runtime S] [--size SIZE] [--bs BS]
#        [--iodepth N] [--rw randwrite|randread|write|read] [-- untorn key=value...]
set -euo pipefail
# shellcheck source=tests/bench/bench_lib.sh
source "$(dirname "$0")/bench_lib.sh"
runtime=20 size=1G bs=4k iodepth=32 rw=randwrite
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) runtime=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --bs) bs=$2; shift 2 ;;
    --iodepth) iodepth=$2; shift 2 ;;
    --rw) rw=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bench_setup
fio_args=(--rw="$rw" --bs="$bs" --iodepth="$iodepth" --size="$size" --time_based --runtime="$runtime"
          --ramp_time=2 --randrepeat=1 --norandommap)
echo "fio nbd engine: rw=$rw bs=$bs iodepth=$iodepth size=$size runtime=${runtime}s, one connection"
truncate -s "$size" "$bench_dir/file.img"
bench_run untorn "$repo/build/plugin/nbdkit-untorn-plugin.so" backing.path="$bench_dir/untorn.img" \
  backing.size="$size" "${extra[@]}"
bench_run nbdkit-file file "$bench_dir/file.img"
bench_run nbdkit-memory memory "$size"
bench_table untorn
