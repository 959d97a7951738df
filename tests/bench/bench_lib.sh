# tests/bench/bench_lib.sh — shared by the benchmark scripts (sourced, not run).
# shellcheck shell=bash
# bench_setup: installs fio if missing, builds, makes $bench_dir (removed on exit).
# bench_run NAME nbdkit-args...: serves NAME on a unix socket (untorn-listen), runs fio's
#   nbd engine with $fio_args (after $fio_warm_args, when set, as an unmeasured first pass),
#   records "NAME IOPS KiB/s PEAK_RSS_KiB" in $bench_results.
# bench_median: folds repeated results of one name (rounds) into one: the median IOPS and
#   bandwidth of its runs, and its highest peak RSS; prints each name's runs to stderr.
# bench_table BASELINE: prints IOPS, MiB/s and BASELINE's IOPS over each target's.
# bench_build_dir ARGS...: the DIR of `--build DIR` among a driver's arguments (default
#   build/ in the repository).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_results=()
bench_pid=""

bench_build_dir() {
  local build="$repo/build" args=("$@") i
  for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[$i]}" = --build ] && [ $((i + 1)) -lt ${#args[@]} ] && build=${args[$((i + 1))]}
  done
  echo "$build"
}

bench_setup() {
  "$repo/scripts/deps.sh" bench
  [ -f "$repo/build/build.ninja" ] || meson setup "$repo/build" >/dev/null
  ninja -C "$repo/build" plugin/nbdkit-untorn-plugin.so tools/untorn-listen >/dev/null
  bench_dir=$(mktemp -d "${TMPDIR:-/tmp}/untorn-bench.XXXXXX")
  trap bench_cleanup EXIT
}

bench_cleanup() {
  if [ -n "$bench_pid" ]; then kill "$bench_pid" 2>/dev/null || true; wait "$bench_pid" 2>/dev/null || true; fi
  declare -F bench_extra_cleanup >/dev/null && bench_extra_cleanup
  rm -rf "$bench_dir"
}

bench_run() {
  local name=$1; shift
  local sock="$bench_dir/$name.sock"
  echo "  running $name ..." >&2
  coproc SRV { exec "$repo/build/tools/untorn-listen" --unix "$sock" -- nbdkit -f --exit-with-parent "$@" 2>"$bench_dir/$name.log"; }
  bench_pid=$SRV_PID
  read -r _ _ <&"${SRV[0]}"
  local out
  if [ -n "${fio_warm_args+x}" ] && [ ${#fio_warm_args[@]} -gt 0 ]; then
    fio --name="$name-warm" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" "${fio_warm_args[@]}" \
        --minimal >/dev/null 2>"$bench_dir/$name.warm.err" \
      || { cat "$bench_dir/$name.warm.err" "$bench_dir/$name.log" >&2; exit 1; }
  fi
  # shellcheck disable=SC2154
  out=$(fio --name="$name" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" "${fio_args[@]}" \
            --minimal 2>"$bench_dir/$name.fio.err") \
    || { cat "$bench_dir/$name.fio.err" "$bench_dir/$name.log" >&2; exit 1; }
  # Peak RSS of the server (untorn-listen execs nbdkit, so the pid is nbdkit's).
  local rss
  rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$bench_pid/status" 2>/dev/null || echo 0)
  kill "$bench_pid"; wait "$bench_pid" 2>/dev/null || true; bench_pid=""
  # terse v3 lines, one per job (fio also prints "connected" lines): 7/8 read KiB/s / IOPS,
  # 48/49 write; jobs are summed.
  bench_results+=("$(echo "$out" | awk -F';' -v n="$name" -v r="${rss:-0}" \
    '$1 == "3" { iops += $8 + $49; bw += $7 + $48 } END { printf "%s %d %d %d\n", n, iops, bw, r }')")
}

bench_median() {
  [ ${#bench_results[@]} -gt 0 ] || return 0
  local folded
  folded=$(printf '%s\n' "${bench_results[@]}" | awk '
    { if (!($1 in n)) order[++names] = $1
      k = ++n[$1]; iops[$1, k] = $2; bw[$1, k] = $3; if ($4 > rss[$1]) rss[$1] = $4 }
    function median(a, name, count,   i, j, t, v) {
      for (i = 1; i <= count; i++) v[i] = a[name, i]
      for (i = 2; i <= count; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return count % 2 ? v[(count + 1) / 2] : int((v[count / 2] + v[count / 2 + 1]) / 2)
    }
    END {
      for (o = 1; o <= names; o++) {
        name = order[o]
        if (n[name] > 1) {
          runs = ""
          for (i = 1; i <= n[name]; i++) runs = runs " " iops[name, i]
          printf "  %s IOPS per round:%s\n", name, runs > "/dev/stderr"
        }
        printf "%s %d %d %d\n", name, median(iops, name, n[name]), median(bw, name, n[name]), rss[name]
      }
    }')
  mapfile -t bench_results <<<"$folded"
}

bench_table() {
  local base=$1 base_iops=""
  for r in "${bench_results[@]}"; do
    read -r name iops _ _ <<<"$r"
    [ "$name" = "$base" ] && base_iops=$iops
  done
  printf '%-22s %10s %10s %14s\n' target IOPS MiB/s "$base/target"
  for r in "${bench_results[@]}"; do
    read -r name iops bw _ <<<"$r"
    printf '%-22s %10d %10.1f %14s\n' "$name" "$iops" "$(awk -v b="$bw" 'BEGIN{print b/1024}')" \
      "$(awk -v u="$base_iops" -v t="$iops" 'BEGIN { printf (t > 0 ? "%.2f" : "n/a"), u / t }')"
  done
}
