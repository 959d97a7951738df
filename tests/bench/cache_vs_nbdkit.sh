#!/usr/bin/env bash
# tests/bench/cache_vs_nbdkit.sh — untorn's folio cache against nbdkit's own plugins, all
# in one run (fio's nbd engine, unix sockets). Sections:
#   rand4k-write-Nc / rand4k-read-Nc  4K random writes, and random reads after one warming
#       sequential read pass; QD32 in total over N = 1 and 4 connections; 1 GiB working set;
#       untorn with cache.size=2G and dirty limits that hold the working set
#       (dirty_background_ratio=75, dirty_ratio=80, dirty_expire=60s: no writeback during
#       the run, as the working set fits); for writes also untorn-default-dirty, the
#       default limits (10 %, 40 %, 5 s), where background writeback of 4K random blocks
#       runs all along. Anchors: nbdkit memory, nbdkit file, nbdkit --filter=cache file.
#   seq1m  1M sequential writes of 4 GiB through a 512 MiB cache, QD32, then FLUSH (fio's
#       end_fsync). Anchors: fio writing a file directly (libaio, O_DIRECT), nbdkit memory.
#   atomic64k  64K atomic-eligible random writes over 2 GiB through a 256 MiB cache, so
#       writeback to disk sets the pace; journal on (auto) against atomic handling off
#       (journal.mode=never, test-only and unsafe).
# Every table gives IOPS, MiB/s, untorn's ratio to each row and the server's peak RSS; all
# rows also go to OUT/cache_bench.tsv and a bar chart of the ratios to OUT/cache_bench.png.
# --rounds N runs every target of a section N times, interleaved (A B C, A B C, ...), and
# reports each one's median (the runs are printed too): on a small shared machine one run
# of a target can move by a third, and interleaving spreads that over all of them.
# Usage: tests/bench/cache_vs_nbdkit.sh [--runtime S] [--rounds N] [--out DIR] [--only SECTION]
set -euo pipefail
# shellcheck source=tests/bench/bench_lib.sh
source "$(dirname "$0")/bench_lib.sh"
runtime=20 rounds=1 out=$PWD only=""
while [ $# -gt 0 ]; do
  case $1 in
    --runtime) runtime=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds: want a whole number from 1, not '$rounds'" >&2; exit 2; }
bench_setup
plugin="$repo/build/plugin/nbdkit-untorn-plugin.so"
mkdir -p "$out"
tsv="$out/cache_bench.tsv"
printf 'section\ttarget\tiops\tmibs\tpeak_rss_mib\tuntorn_over_target\n' >"$tsv"

# Prints the table of the current $bench_results and appends it to the TSV.
section_done() {
  local section=$1
  bench_median
  echo "== $section"
  bench_table untorn
  printf '%-22s %14s\n' target "peak RSS MiB"
  local untorn_iops=""
  for r in "${bench_results[@]}"; do
    read -r name iops bw rss <<<"$r"
    [ "$name" = untorn ] && untorn_iops=$iops
    printf '%-22s %14d\n' "$name" $((rss / 1024))
  done
  for r in "${bench_results[@]}"; do
    read -r name iops bw rss <<<"$r"
    awk -v s="$section" -v n="$name" -v i="$iops" -v b="$bw" -v r="$rss" -v u="$untorn_iops" \
      'BEGIN { printf "%s\t%s\t%d\t%.1f\t%d\t%.2f\n", s, n, i, b / 1024, r / 1024, (i > 0 ? u / i : 0) }' >>"$tsv"
  done
  bench_results=()
}

want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

common=(--time_based --runtime="$runtime" --ramp_time=2 --randrepeat=1 --norandommap)
for rw in randwrite randread; do
  for conns in 1 4; do
    section="rand4k-${rw#rand}-${conns}c"
    want "$section" || continue
    fio_args=(--rw="$rw" --bs=4k --numjobs="$conns" --iodepth=$((32 / conns)) --size=1G "${common[@]}")
    fio_warm_args=()
    [ "$rw" = randread ] && fio_warm_args=(--rw=read --bs=1M --iodepth=8 --size=1G)
    for ((round = 1; round <= rounds; round++)); do
      rm -f "$bench_dir"/*.img "$bench_dir"/*.journal
      truncate -s 1G "$bench_dir/file.img" "$bench_dir/cached.img"
      bench_run untorn "$plugin" backing.path="$bench_dir/untorn.img" backing.size=1G cache.size=2G \
        cache.dirty_background_ratio=75 cache.dirty_ratio=80 cache.dirty_expire=60s
      if [ "$rw" = randwrite ]; then
        rm -f "$bench_dir/untorn.img" "$bench_dir/untorn.img.journal"
        bench_run untorn-default-dirty "$plugin" backing.path="$bench_dir/untorn.img" backing.size=1G cache.size=2G
      fi
      bench_run nbdkit-memory memory 1G
      bench_run nbdkit-file file "$bench_dir/file.img"
      bench_run nbdkit-cache-filter --filter=cache file "$bench_dir/cached.img"
    done
    section_done "$section"
  done
done
fio_warm_args=()

if want seq1m; then
  fio_args=(--rw=write --bs=1M --iodepth=32 --size=4G --end_fsync=1)
  for ((round = 1; round <= rounds; round++)); do
    rm -f "$bench_dir"/*.img "$bench_dir"/*.journal
    bench_run untorn "$plugin" backing.path="$bench_dir/untorn.img" backing.size=4G cache.size=512M
    bench_run nbdkit-memory memory 4G
    rm -f "$bench_dir/untorn.img" "$bench_dir/untorn.img.journal"
    echo "  running fio-libaio-direct ..." >&2
    direct=$(fio --name=direct --ioengine=libaio --direct=1 --filename="$bench_dir/direct.img" \
               "${fio_args[@]}" --minimal 2>"$bench_dir/direct.err") || { cat "$bench_dir/direct.err" >&2; exit 1; }
    rm -f "$bench_dir/direct.img"
    bench_results+=("$(echo "$direct" | awk -F';' '$1 == "3" { printf "fio-libaio-direct %d %d 0\n", $49, $48 }')")
  done
  section_done seq1m
fi

if want atomic64k; then
  fio_args=(--rw=randwrite --bs=64k --iodepth=32 --size=2G "${common[@]}")
  for ((round = 1; round <= rounds; round++)); do
    rm -f "$bench_dir"/*.img "$bench_dir"/*.journal
    bench_run untorn "$plugin" backing.path="$bench_dir/j.img" backing.size=2G cache.size=256M
    bench_run untorn-atomic-off "$plugin" backing.path="$bench_dir/n.img" backing.size=2G cache.size=256M \
      journal.mode=never test.unsafe_allow_journal_never=true
  done
  section_done atomic64k
fi

if command -v gnuplot >/dev/null; then
  gnuplot <<EOF
set terminal pngcairo size 1400,700 noenhanced
set bmargin 12
set rmargin 12
set output "$out/cache_bench.png"
set title "untorn IOPS / target IOPS (1.0 = equal)"
set style data histograms
set style fill solid 0.8
set xtics rotate by -40
set datafile separator "\t"
set yrange [0:*]
plot "< awk -F'\\t' 'NR > 1 && \$2 != \"untorn\"' $tsv" using 6:xticlabels(sprintf("%s %s", stringcolumn(1), stringcolumn(2))) title "" lc rgb "#4477aa"
EOF
  echo "chart: $out/cache_bench.png"
else
  echo "chart skipped: gnuplot is missing (scripts/deps.sh bench installs gnuplot-nox)" >&2
fi
echo "table: $tsv"
