#!/usr/bin/env bash
# scripts/test.sh — install what is missing, build, and run every test: the plain build,
# then the same suite under ASan+UBSan and under TSan.
# Usage: scripts/test.sh [--no-sanitizers] [--no-guest] [meson test args...]
# Then a clang build of the config parsers runs its libFuzzer target for 60 s (build-fuzz;
# UNTORN_FUZZ_SECONDS changes it), and the benchmark runs once, small, as a smoke test
# (tests/bench/compare.sh --quick: every section and anchor, no thresholds).
# After the builds, the guest suite (vm-images/run-guest on an untorn device) runs on two
# guest kernels: Debian trixie's Linux 6.12 under QEMU 10, and the newest Debian kernel
# (trixie-backports, Linux 7.x) under QEMU 11, with XFS and ext4 on top; each result is
# named by its kernel. It is skipped, loudly, only where QEMU cannot be installed.
# Builds live in build/, build-asan/, build-tsan/ of the repo.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

sanitizers=1 guest=1
while [ $# -gt 0 ]; do
  case $1 in
    --no-sanitizers) sanitizers=0; shift ;;
    --no-guest) guest=0; shift ;;
    *) break ;;
  esac
done

"$repo/scripts/deps.sh" test

jobs=$(nproc)
builds=("build:")
[ $sanitizers = 1 ] && builds+=("build-asan:-Db_sanitize=address,undefined -Db_lundef=false"
                               "build-tsan:-Db_sanitize=thread -Db_lundef=false")
# The parsers alone under libFuzzer (clang), for a bounded time (UNTORN_FUZZ_SECONDS).
builds+=("build-fuzz:-Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false")

total_pass=0 total_fail=0 total_skip=0 failed_builds=()
skips_file=$(mktemp); trap 'rm -f "$skips_file"' EXIT
start=$(date +%s)
[ $sanitizers = 1 ] || echo "build-asan, build-tsan: not run (--no-sanitizers given)" >> "$skips_file"
[ $guest = 1 ] || echo "guest: the guest suite was not run (--no-guest given)" >> "$skips_file"
for entry in "${builds[@]}"; do
  dir=${entry%%:*}
  opts=${entry#*:}
  echo "==> $dir: configure and build ${opts:+($opts)}"
  if [ ! -f "$dir/build.ninja" ]; then
    # shellcheck disable=SC2086
    if [ "$dir" = build-fuzz ]; then CXX=clang++ meson setup "$dir" $opts >/dev/null
    else meson setup "$dir" $opts >/dev/null; fi
  fi
  ninja -C "$dir" -j "$jobs"
  echo "==> $dir: test"
  rc=0
  meson test -C "$dir" --print-errorlogs --num-processes "$jobs" "$@" || rc=$?
  # The harnesses' own figures (crash states, kill cycles, group commit, RWF_ATOMIC).
  grep -hE '^\[ (crash|kill|journal|xfs|note|soak|fuzz) ' "$dir/meson-logs/testlog.txt" 2>/dev/null | sed "s|^|  $dir: |" || true
  # Passed, failed and skipped cases from meson's log; each skip with its reason.
  summary=$(python3 "$repo/scripts/test_summary.py" "$dir" || true)
  grep '^SKIP ' <<<"$summary" | sed "s|^SKIP |$dir: |" >> "$skips_file" || true
  read -r _ p f k < <(grep '^COUNTS ' <<<"$summary" || echo "COUNTS 0 1 0")
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + k))
  echo "==> $dir: $p passed, $f failed, $k skipped"
  [ $rc -eq 0 ] || failed_builds+=("$dir")
done
# The benchmark's smoke test: every section against every anchor, small and short, no
# thresholds (tests/bench/compare.sh --quick); it fails only where a run fails.
echo "==> benchmark smoke test (tests/bench/compare.sh --quick)"
bq="$repo/build/bench-quick"
if "$repo/tests/bench/compare.sh" --quick --out "$bq" > "$bq.txt" 2> "$bq.log"; then
  cat "$bq.txt"
  bskips=$(sed -n '/^skipped anchors/,/^$/p' "$bq.txt" | grep '^  ' | sed 's/^  /bench-quick: anchor /' || true)
  if [ -n "$bskips" ]; then
    echo "$bskips" >> "$skips_file"; total_skip=$((total_skip + $(wc -l <<<"$bskips")))
  fi
  total_pass=$((total_pass + 1))
else
  cat "$bq.txt"; tail -40 "$bq.log"
  echo "==> benchmark smoke test FAILED (logs: build/bench-quick.txt, build/bench-quick.log)"
  total_fail=$((total_fail + 1)); failed_builds+=("bench-quick")
fi
if [ $guest = 1 ]; then
  if ! "$repo/vm-images/setup-host.sh" >/dev/null 2>"$repo/build/guest-setup.err"; then
    echo "######## GUEST SUITE SKIPPED: QEMU 10 could not be installed here ########"
    sed 's/^/  /' "$repo/build/guest-setup.err" | tail -5
    echo "guest: the whole guest suite: QEMU 10 could not be installed ($(tail -1 "$repo/build/guest-setup.err"))" >> "$skips_file"
    total_skip=$((total_skip + 1))
  else
    for kernel in 6.12 latest; do
      echo "==> guest suite on the $kernel kernel (vm-images/run-guest --kernel $kernel)"
      grc=0 out="$repo/build/guest-results-$kernel.txt"
      "$repo/vm-images/run-guest" --kernel "$kernel" > "$out" || grc=$?
      cat "$out"
      gpass=$(grep -c '^RESULT .* PASS' "$out" || true)
      gfail=$(grep -c '^RESULT .* FAIL' "$out" || true)
      if [ $grc -ne 0 ] && [ "$gfail" -eq 0 ]; then
        gfail=1; echo "guest suite ($kernel) exited $grc without a failed result (its log is above)"
      fi
      total_pass=$((total_pass + gpass)); total_fail=$((total_fail + gfail))
      [ "$gfail" -eq 0 ] || failed_builds+=("guest-$kernel")
    done
  fi
fi
elapsed=$(( $(date +%s) - start ))
echo
echo "==> test cases across ${#builds[@]} build(s)$([ $guest = 1 ] && echo " and the guest suite") in ${elapsed}s"
[ ${#failed_builds[@]} -eq 0 ] || { echo "failed in: ${failed_builds[*]}"; total_fail=$((total_fail > 0 ? total_fail : 1)); }
if [ -s "$skips_file" ]; then
  echo "skipped, with their reasons:"
  sed 's/^/  /' "$skips_file"
fi
echo "untorn: $total_pass passed, $total_fail failed, $total_skip skipped"
[ $total_fail -eq 0 ]
