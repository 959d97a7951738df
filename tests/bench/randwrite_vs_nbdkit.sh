#!/usr/bin/env bash
# tests/bench/randwrite_vs_nbdkit.sh — fio (nbd engine) 4K random writes, QD32, against
# untorn and, in the same run, nbdkit's own file and memory plugins (the anchors).
# Prints a table with IOPS, MiB/s and the ratio of untorn to each anchor.
# Usage: tests/bench/randwrite_vs_nbdkit.sh [--runtime SECONDS] [--size SIZE] [--bs BS]
#        [--iodepth N] [--rw randwrite|randread|write|read] [-- extra untorn key=value...]
# Needs fio with the nbd engine (Debian's has it); installs it if missing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
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

"$repo/scripts/deps.sh" bench
[ -f "$repo/build/build.ninja" ] || meson setup "$repo/build" >/dev/null
ninja -C "$repo/build" plugin/nbdkit-untorn-plugin.so tools/untorn-listen >/dev/null

dir=$(mktemp -d "${TMPDIR:-/tmp}/untorn-bench.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# run_one NAME nbdkit-args... : serves on a fresh socket, runs fio, prints "NAME IOPS BW_KIB"
run_one() {
  local name=$1; shift
  local sock="$dir/$name.sock"
  coproc SRV { exec "$repo/build/tools/untorn-listen" --unix "$sock" -- nbdkit -f --exit-with-parent "$@" 2>"$dir/$name.log"; }
  pid=$SRV_PID
  read -r _ _ <&"${SRV[0]}"
  local out
  out=$(fio --name="$name" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$rw" \
            --bs="$bs" --iodepth="$iodepth" --size="$size" --time_based --runtime="$runtime" \
            --ramp_time=2 --randrepeat=1 --norandommap --minimal 2>"$dir/$name.fio.err") \
    || { cat "$dir/$name.fio.err" "$dir/$name.log" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  # terse v3 line (fio also prints "connected" lines): 7/8 read bw KiB/s / iops, 48/49 write
  echo "$out" | awk -F';' -v n="$name" '$1 == "3" { printf "%s %d %d\n", n, $8 + $49, $7 + $48 }'
}

echo "fio nbd engine: rw=$rw bs=$bs iodepth=$iodepth size=$size runtime=${runtime}s, one connection"
truncate -s "$size" "$dir/file.img"
truncate -s "$size" "$dir/untorn.img"
results=()
results+=("$(run_one untorn "$repo/build/plugin/nbdkit-untorn-plugin.so" backing.path="$dir/untorn.img" "${extra[@]}")")
results+=("$(run_one nbdkit-file file "$dir/file.img")")
results+=("$(run_one nbdkit-memory memory "$size")")

untorn_iops=$(echo "${results[0]}" | awk '{print $2}')
printf '%-14s %10s %10s %16s\n' target IOPS MiB/s "untorn/target"
for r in "${results[@]}"; do
  read -r name iops bw <<<"$r"
  ratio=$(awk -v u="$untorn_iops" -v t="$iops" 'BEGIN { printf (t > 0 ? "%.2f" : "n/a"), u / t }')
  printf '%-14s %10d %10.1f %16s\n' "$name" "$iops" "$(awk -v b="$bw" 'BEGIN{print b/1024}')" "$ratio"
done
