#!/usr/bin/env bash
# vm-images/qemu11.sh — QEMU 11 (Debian trixie-backports) on a Debian 12 host, from Debian
# packages only: qemu-system-x86 and its whole dependency closure are unpacked (dpkg-deb -x,
# no dpkg database, no system change) into $vm_cache/qemu11/root and run through that
# root's own dynamic loader, with the root's firmware. Linux 7.x guests need it: they read
# only the per-namespace atomic limit (NAWUPF), which QEMU 10's nvme-ns cannot set.
# Prints the path of a wrapper that runs like qemu-system-x86_64. Cached: fetched once;
# `--refresh` fetches the newest trixie-backports QEMU again.
source "$(dirname "$0")/lib.sh"
dir="$vm_cache/qemu11"
wrapper="$dir/qemu-system-x86_64"
# The wrapper is usable when this QEMU has the per-namespace atomic properties.
usable() { [ -x "$wrapper" ] && "$wrapper" -device nvme-ns,help 2>/dev/null | grep -q 'atomic\.nawupf'; }
if [ "${1:-}" != --refresh ] && usable; then echo "$wrapper"; exit 0; fi

opts=$(vm_apt_opts trixiebpo trixie trixie-updates trixie-backports)
vm_say "fetching trixie and trixie-backports package lists (private, in $vm_cache/apt-trixiebpo)"
# shellcheck disable=SC2086
apt-get $opts update -q >&2
# shellcheck disable=SC2086
version=$(apt-cache $opts madison qemu-system-x86 | awk -F'|' '$3 ~ /trixie-backports/ { gsub(/ /, "", $2); print $2; exit }')
case $version in
  *:1[1-9].*|1[1-9].*) ;;
  *) echo "qemu11.sh: trixie-backports has no QEMU 11 or newer (found '${version:-nothing}')" >&2; exit 1 ;;
esac
# qemu-system-x86 and its Depends (recursively, no Recommends), minus what only a package
# manager needs; QEMU's own packages from trixie-backports, the rest from trixie.
# shellcheck disable=SC2086
deps=$(apt-cache $opts depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances -t trixie-backports qemu-system-x86 |
       grep -E '^(lib|zlib|seabios|ipxe)' | grep -vE -- '^libpam|^libdebian-installer|^libsemanage' | sort -u)
debs="$dir/debs"; rm -rf "$debs"; mkdir -p "$debs"
vm_say "downloading QEMU $version and its libraries (cached in $dir)"
# shellcheck disable=SC2086
(cd "$debs" && apt-get $opts download qemu-system-x86/trixie-backports qemu-system-common/trixie-backports \
   qemu-system-data/trixie-backports $deps >/dev/null 2>"$dir/download.err") ||
  { cat "$dir/download.err" >&2; exit 1; }
rm -rf "$dir/root"; mkdir -p "$dir/root"
for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$dir/root"; done
rm -rf "$debs"
root="$dir/root"
cat > "$wrapper" <<EOF
#!/bin/sh
# QEMU $version from trixie-backports, unpacked in $root by vm-images/qemu11.sh.
# Its own loader and libraries only (--inhibit-cache: never the host's), its own firmware.
export QEMU_MODULE_DIR="$root/usr/lib/x86_64-linux-gnu/qemu"
exec "$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --inhibit-cache \\
  --library-path "$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" \\
  "$root/usr/bin/qemu-system-x86_64" -L "$root/usr/share/qemu" -L "$root/usr/share/seabios" \\
  -L "$root/usr/lib/ipxe/qemu" "\$@"
EOF
chmod 755 "$wrapper"
usable || { echo "qemu11.sh: the unpacked QEMU does not run or has no nvme-ns atomic.nawupf:" >&2
            "$wrapper" --version >&2 || true; exit 1; }
"$wrapper" --version | head -1 >&2
echo "$wrapper"
