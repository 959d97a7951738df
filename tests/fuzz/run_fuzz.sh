#!/usr/bin/env bash
# tests/fuzz/run_fuzz.sh BINARY SEED_CORPUS ARTIFACT_DIR — one bounded libFuzzer run.
# UNTORN_FUZZ_SECONDS (default 60) bounds it; run longer on demand, e.g.
#   UNTORN_FUZZ_SECONDS=3600 meson test -C build-fuzz config_fuzz
# UNTORN_LIBFUZZER_SEED reproduces a run (its seed is printed). The seed corpus is copied
# to a temporary directory, so the repository never changes; a crashing input is kept in
# ARTIFACT_DIR and printed (base64), to become a unit test.
set -euo pipefail
bin=$1 seeds=$2 artifacts=$3
secs=${UNTORN_FUZZ_SECONDS:-60}
seed=${UNTORN_LIBFUZZER_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
work=$(mktemp -d "${TMPDIR:-/tmp}/untorn-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp "$seeds"/* "$work/corpus/"
name=$(basename "$bin")
echo "[ fuzz     ] $name: seed $seed (UNTORN_LIBFUZZER_SEED=$seed reproduces it), $secs s, $(ls "$seeds" | wc -l) seed inputs"
rc=0
# ASan's leak check stays on; libFuzzer stops at the first finding.
"$bin" -seed="$seed" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts/$name-" "$work/corpus" > "$work/log" 2>&1 || rc=$?
runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work/log" | grep -oE '[0-9]+$' || echo 0)
corpus=$(ls "$work/corpus" | wc -l)
if [ $rc -ne 0 ]; then
  tail -40 "$work/log"
  for f in "$artifacts/$name"-*; do
    [ -f "$f" ] || continue
    echo "finding kept in $f (base64 below); add it to tests/unit/config_loader_test.cc"
    base64 "$f"
  done
  echo "[ fuzz     ] $name: FAILED after $runs executions (seed $seed)"
  exit 1
fi
echo "[ fuzz     ] $name: $runs executions in $secs s, corpus grew to $corpus inputs, 0 crashes"
