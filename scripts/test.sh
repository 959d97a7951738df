#!/usr/bin/env bash
# scripts/test.sh — install what is missing, build, and run every test: the plain build,
# then the same suite under ASan+UBSan and under TSan.
# Usage: scripts/test.sh [--no-sanitizers] [meson test args...]
# Builds live in build/, build-asan/, build-tsan/ of the repo.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

sanitizers=1
if [ "${1:-}" = --no-sanitizers ]; then sanitizers=0; shift; fi

"$repo/scripts/deps.sh" test

jobs=$(nproc)
builds=("build:")
[ $sanitizers = 1 ] && builds+=("build-asan:-Db_sanitize=address,undefined -Db_lundef=false"
                               "build-tsan:-Db_sanitize=thread -Db_lundef=false")

total_pass=0 total_fail=0 failed_builds=()
start=$(date +%s)
for entry in "${builds[@]}"; do
  dir=${entry%%:*}
  opts=${entry#*:}
  echo "==> $dir: configure and build ${opts:+($opts)}"
  if [ ! -f "$dir/build.ninja" ]; then
    # shellcheck disable=SC2086
    meson setup "$dir" $opts >/dev/null
  fi
  ninja -C "$dir" -j "$jobs"
  echo "==> $dir: test"
  rc=0
  meson test -C "$dir" --print-errorlogs --num-processes "$jobs" "$@" || rc=$?
  # The harnesses' own figures (crash states, kill cycles, group commit, RWF_ATOMIC).
  grep -hE '^\[ (crash|kill|journal|xfs|note) ' "$dir/meson-logs/testlog.txt" 2>/dev/null | sed "s|^|  $dir: |" || true
  junit="$dir/meson-logs/testlog.junit.xml"
  if [ -f "$junit" ]; then
    cases=$(grep -c '<testcase ' "$junit" || true)
    fails=$(grep -cE '<(failure|error)[ >]' "$junit" || true)
    total_pass=$((total_pass + cases - fails))
    total_fail=$((total_fail + fails))
  fi
  [ $rc -eq 0 ] || failed_builds+=("$dir")
done
elapsed=$(( $(date +%s) - start ))
echo
echo "==> test cases across ${#builds[@]} build(s) in ${elapsed}s"
[ ${#failed_builds[@]} -eq 0 ] || { echo "failed in: ${failed_builds[*]}"; total_fail=$((total_fail > 0 ? total_fail : 1)); }
echo "untorn: $total_pass passed, $total_fail failed"
[ $total_fail -eq 0 ]
