#!/usr/bin/env bash
# The man page and the --help texts a user reads: nbdkit-untorn-plugin(1) renders with no
# groff warning, documents every key the loader accepts (it is generated from the key
# table; this proves the build wired it), is installed by `meson install`, and every
# --help answers and points to it.
# Needs UNTORN_MAN_PAGE, UNTORN_BUILD_ROOT, UNTORN_PLUGIN, UNTORN_CONFIG, UNTORN_LISTEN.
set -euo pipefail
command -v man >/dev/null || { echo "SKIP: man is not installed (apt-get install man-db)"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/untorn-man-test.XXXXXX")
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

MANWIDTH=100 man --warnings -l "$UNTORN_MAN_PAGE" > "$dir/man.txt" 2> "$dir/man.err" || fail "man -l failed: $(cat "$dir/man.err")"
[ ! -s "$dir/man.err" ] || fail "groff warnings: $(cat "$dir/man.err")"
for section in NAME SYNOPSIS DESCRIPTION PROMISES PARAMETERS READ-ONLY LOGGING FILES EXAMPLES "EXIT STATUS" ERRORS "SEE ALSO"; do
  grep -q "^$section" "$dir/man.txt" || fail "section $section missing"
done
n=0
while IFS='=' read -r key _; do
  grep -q "^ *$key=VALUE" "$dir/man.txt" || fail "key $key is not in the man page"
  n=$((n + 1))
done < <("$UNTORN_CONFIG" backing.path=/x)
[ $n -ge 20 ] || fail "only $n keys listed by untorn-config"
echo "ok: man page renders, $n keys documented"

meson install -C "$UNTORN_BUILD_ROOT" --no-rebuild --quiet --destdir "$dir/root" >/dev/null \
  || fail "meson install failed"
installed=$(find "$dir/root" -path '*/man1/nbdkit-untorn-plugin.1')
[ -n "$installed" ] || fail "meson install put no nbdkit-untorn-plugin.1 under man1"
cmp "$installed" "$UNTORN_MAN_PAGE" || fail "installed page differs from the built one"
find "$dir/root" -name nbdkit-untorn-plugin.so | grep -q . || fail "meson install put no plugin"
echo "ok: meson install puts the page at ${installed#"$dir/root"}"

preload=()  # the sanitizer builds' plugin needs its runtime preloaded into nbdkit
[ -n "${UNTORN_NBDKIT_PRELOAD:-}" ] && preload=(env "LD_PRELOAD=$UNTORN_NBDKIT_PRELOAD")
# shellcheck disable=SC2206
[ -n "${UNTORN_NBDKIT_ENV:-}" ] && preload=(env ${UNTORN_NBDKIT_ENV} "${preload[@]:1}")
"${preload[@]}" nbdkit "$UNTORN_PLUGIN" --help > "$dir/help.txt" 2>&1 || fail "nbdkit untorn --help failed: $(tail -3 "$dir/help.txt")"
grep -q "man nbdkit-untorn-plugin" "$dir/help.txt" || fail "nbdkit untorn --help does not point to the man page"
grep -q "^stats.file=" "$dir/help.txt" || fail "nbdkit untorn --help does not list stats.file"
"$UNTORN_CONFIG" --help | grep -q "^usage: untorn-config" || fail "untorn-config --help"
"$UNTORN_LISTEN" --help | grep -q "^usage: untorn-listen" || fail "untorn-listen --help"
if "$UNTORN_CONFIG" --bogus 2>"$dir/err"; then fail "untorn-config accepted --bogus"; fi
grep -q "unknown option or missing value: --bogus" "$dir/err" || fail "untorn-config --bogus message: $(cat "$dir/err")"
echo "man page and help: ok"
