#!/usr/bin/env bash
# vm-images/build-guest.sh [--kernel 6.12|latest] — the guest: a Debian kernel (6.12: trixie's;
# latest: the newest in trixie-backports, Linux 7.x), busybox-static, fio (3.39) with its
# whole library closure, mkfs.xfs/xfs_io (xfsprogs) and mke2fs/filefrag (e2fsprogs) with
# theirs, the nvme, ext4 and xfs modules with their dependencies, and the project's own
# guest programs (static), packed as an initramfs. Debian packages only, fetched with
# `apt-get download` through private trixie + trixie-backports lists (userland always from
# trixie); everything is cached in $vm_cache and rebuilt only when a guest source changes.
# Prints "VMLINUZ INITRD KERNEL-RELEASE".
source "$(dirname "$0")/lib.sh"
kernel=6.12
case ${1:-} in
  --kernel) kernel=${2:-}; shift 2 ;;
  "") ;;
  *) echo "build-guest.sh: unknown argument '$1' (--kernel 6.12|latest)" >&2; exit 2 ;;
esac
case $kernel in
  6.12) target=trixie ;;
  latest) target=trixie-backports ;;
  *) echo "build-guest.sh: --kernel wants 6.12 or latest, not '$kernel'" >&2; exit 2 ;;
esac
out="$vm_cache/guest-$kernel"
mkdir -p "$out"
stamp=$(cat "$vm_here/guest/"* "$0" "$vm_here/kmods.py" | sha256sum | cut -c1-16)
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.$stamp.cpio.gz" ] && [ -f "$out/release" ]; then
  echo "$out/vmlinuz $out/initrd.$stamp.cpio.gz $(cat "$out/release")"; exit 0
fi
# shellcheck disable=SC2086
opts=$(vm_apt_opts trixiebpo trixie trixie-updates trixie-backports)
ls "$vm_cache/apt-trixiebpo/lists/"*trixie-backports_InRelease >/dev/null 2>&1 ||
  { vm_say "fetching trixie and trixie-backports package lists"; apt-get $opts update -q >&2; }
# The kernel: linux-image-amd64 of the target suite names linux-image-RELEASE, which is
# either the kernel itself (6.12) or, in newer packaging, a meta package over
# linux-binary-RELEASE (vmlinuz) and linux-modules-RELEASE.
# shellcheck disable=SC2086
kpkg=$(apt-cache $opts depends -t $target linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || { echo "build-guest.sh: no linux-image-amd64 in $target" >&2; exit 1; }
kver=${kpkg#linux-image-}
kdebs=("$kpkg")
# shellcheck disable=SC2086
if apt-cache $opts show "linux-modules-$kver" >/dev/null 2>&1; then kdebs=("linux-binary-$kver" "linux-modules-$kver"); fi
tools="fio xfsprogs e2fsprogs"
# shellcheck disable=SC2086
libpkgs=$(apt-cache $opts depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances \
            $(apt-cache $opts depends $tools | awk '/Depends: lib|Depends: zlib/ { print $2 }') |
          grep -E '^(lib|zlib)' | grep -vE -- '-common$|^libsemanage|^libpam|^libdebian-installer|^libicu' | sort -u)
debs="$vm_cache/debs"; mkdir -p "$debs"
vm_say "downloading ${kdebs[*]}, $tools, busybox-static and their libraries (cached in $debs)"
# shellcheck disable=SC2086
(cd "$debs" && apt-get $opts download "${kdebs[@]}" $tools busybox-static $libpkgs >/dev/null 2>"$out/download.err") ||
  { cat "$out/download.err" >&2; exit 1; }

x="$vm_cache/extract-$kernel"; rm -rf "$x"; mkdir -p "$x"/{kernel,tools,bb,libs}
for k in "${kdebs[@]}"; do dpkg-deb -x "$(ls "$debs/${k}"_*.deb | tail -1)" "$x/kernel"; done
for t in $tools; do dpkg-deb -x "$(ls "$debs/${t}"_*.deb | tail -1)" "$x/tools"; done
dpkg-deb -x "$(ls "$debs"/busybox-static_*.deb | tail -1)" "$x/bb"
for p in $libpkgs; do dpkg-deb -x "$(ls "$debs/${p}"_*.deb | tail -1)" "$x/libs"; done
vmlinuz=""
for v in "$x/kernel/boot/vmlinuz-$kver" "$x/kernel/usr/lib/modules/$kver/vmlinuz"; do [ -f "$v" ] && vmlinuz=$v; done
[ -n "$vmlinuz" ] || { echo "build-guest.sh: no vmlinuz in ${kdebs[*]}" >&2; exit 1; }
cp "$vmlinuz" "$out/vmlinuz"

vm_say "building the guest programs (static) and the initramfs (Linux $kver)"
r="$x/root"; mkdir -p "$r"/{usr/bin,usr/lib/x86_64-linux-gnu,lib64,proc,sys,dev,tmp,mnt,mods}
ln -s usr/bin "$r/bin"; ln -s usr/bin "$r/sbin"; ln -s usr/lib "$r/lib"
gcc -static -O2 -Wall -Werror -o "$r/usr/bin/atomic_check" "$vm_here/guest/atomic_check.c"
gcc -static -O2 -Wall -Werror -pthread -o "$r/usr/bin/stamp_units" "$vm_here/guest/stamp_units.c"
cp "$x/bb/usr/bin/busybox" "$r/usr/bin/busybox"
for a in $("$r/usr/bin/busybox" --list); do [ -e "$r/usr/bin/$a" ] || ln -s busybox "$r/usr/bin/$a"; done
# fio and the filesystem tools (replacing busybox's mke2fs, which has no bigalloc).
bins=()
for b in usr/bin/fio sbin/mkfs.xfs usr/sbin/mkfs.xfs usr/sbin/xfs_io sbin/mke2fs usr/sbin/mke2fs usr/sbin/filefrag; do
  [ -f "$x/tools/$b" ] || continue
  rm -f "$r/usr/bin/$(basename "$b")"; cp "$x/tools/$b" "$r/usr/bin/"; bins+=("$x/tools/$b")
done
mkdir -p "$r/etc"; cp "$x/tools/etc/mke2fs.conf" "$r/etc/"   # mke2fs -t ext4 needs it
for b in fio mkfs.xfs xfs_io mke2fs filefrag; do
  [ -f "$r/usr/bin/$b" ] || { echo "build-guest.sh: $b missing from $tools" >&2; exit 1; }
done
python3 "$vm_here/guest/elfclosure.py" "$x/libs" "${bins[@]}" > "$x/libs.txt"
(cd "$x/libs" && while read -r f; do
   case $f in lib64/*) continue ;; esac
   mkdir -p "$r/$(dirname "$f")"; cp -L "$f" "$r/$f"; done < "$x/libs.txt")
ln -s /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$r/lib64/ld-linux-x86-64.so.2"
strip --strip-unneeded "$r"/usr/lib/x86_64-linux-gnu/*.so* "$r"/usr/lib/x86_64-linux-gnu/ceph/*.so* 2>/dev/null || true
# nvme (for the untorn namespace), ext4 and xfs (filesystem checks), with what they need, in
# load order (/mods/order); crc32c for the filesystems' checksums where it is a module.
python3 "$vm_here/kmods.py" "$x/kernel/usr/lib/modules/$kver/kernel" "$r/mods" \
  '?crc32c_generic' '?crc32c_cryptoapi' nvme ext4 xfs > "$r/mods/order"
strip --strip-debug "$r"/mods/*.ko
cp "$vm_here/guest/init" "$r/init"; chmod 755 "$r/init"
rm -f "$out"/initrd.*.cpio.gz
(cd "$r" && find . | cpio -o -H newc --quiet | gzip -6 > "$out/initrd.$stamp.cpio.gz")
rm -rf "$x"
echo "$kver" > "$out/release"
echo "$out/vmlinuz $out/initrd.$stamp.cpio.gz $kver"
