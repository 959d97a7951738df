#!/usr/bin/env bash
# vm-images/build-guest.sh — the guest: Debian trixie's Linux 6.12 kernel, busybox-static,
# fio (3.39) with its whole library closure, the nvme modules, and the project's own guest
# programs (static), packed as an initramfs. Debian packages only, fetched with
# `apt-get download` through private trixie lists; everything is cached in $vm_cache and
# rebuilt only when a guest source changes. Prints the two output paths.
source "$(dirname "$0")/lib.sh"
out="$vm_cache/guest"
mkdir -p "$out"
stamp=$(cat "$vm_here/guest/"* "$0" | sha256sum | cut -c1-16)
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.$stamp.cpio.gz" ]; then
  echo "$out/vmlinuz $out/initrd.$stamp.cpio.gz"; exit 0
fi
# shellcheck disable=SC2086
opts=$(vm_apt_opts trixie trixie)
ls "$vm_cache/apt-trixie/lists/"*trixie_InRelease >/dev/null 2>&1 || { vm_say "fetching trixie package lists"; apt-get $opts update -q >&2; }
# shellcheck disable=SC2086
kpkg=$(apt-cache $opts depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
kver=${kpkg#linux-image-}
# shellcheck disable=SC2086
libpkgs=$(apt-cache $opts depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances --no-pre-depends \
            $(apt-cache $opts depends fio | awk '/Depends: lib|Depends: zlib/ { print $2 }') |
          grep -E '^(lib|zlib)' | grep -vE -- '-common$|^libsemanage|^libpam|^libdebian-installer' | sort -u)
debs="$vm_cache/debs"; mkdir -p "$debs"
vm_say "downloading $kpkg, fio, busybox-static and fio's libraries (cached in $debs)"
# shellcheck disable=SC2086
(cd "$debs" && apt-get $opts download "$kpkg" fio busybox-static $libpkgs >/dev/null)

x="$vm_cache/extract"; rm -rf "$x"; mkdir -p "$x"/{kernel,fio,bb,libs}
dpkg-deb -x "$debs/${kpkg}"_*.deb "$x/kernel"
dpkg-deb -x "$debs"/fio_*.deb "$x/fio"
dpkg-deb -x "$debs"/busybox-static_*.deb "$x/bb"
for d in "$debs"/*.deb; do case $d in *linux-image*|*/fio_*|*busybox*) ;; *) dpkg-deb -x "$d" "$x/libs" ;; esac; done
cp "$x/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"

vm_say "building the guest programs (static) and the initramfs"
r="$x/root"; mkdir -p "$r"/{usr/bin,usr/lib/x86_64-linux-gnu,lib64,proc,sys,dev,tmp,mods}
ln -s usr/bin "$r/bin"; ln -s usr/bin "$r/sbin"; ln -s usr/lib "$r/lib"
gcc -static -O2 -Wall -Werror -o "$r/usr/bin/atomic_check" "$vm_here/guest/atomic_check.c"
gcc -static -O2 -Wall -Werror -pthread -o "$r/usr/bin/stamp_units" "$vm_here/guest/stamp_units.c"
cp "$x/bb/usr/bin/busybox" "$r/usr/bin/busybox"
for a in $("$r/usr/bin/busybox" --list); do [ -e "$r/usr/bin/$a" ] || ln -s busybox "$r/usr/bin/$a"; done
cp "$x/fio/usr/bin/fio" "$r/usr/bin/fio"
python3 "$vm_here/guest/elfclosure.py" "$x/libs" "$x/fio/usr/bin/fio" > "$x/fio-libs.txt"
(cd "$x/libs" && while read -r f; do
   case $f in lib64/*) continue ;; esac
   mkdir -p "$r/$(dirname "$f")"; cp -L "$f" "$r/$f"; done < "$x/fio-libs.txt")
ln -s /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$r/lib64/ld-linux-x86-64.so.2"
strip --strip-unneeded "$r"/usr/lib/x86_64-linux-gnu/*.so* "$r"/usr/lib/x86_64-linux-gnu/ceph/*.so* 2>/dev/null || true
md="$x/kernel/usr/lib/modules/$kver/kernel/drivers/nvme"
for m in common/nvme-auth host/nvme-core host/nvme; do xz -dc "$md/$m.ko.xz" > "$r/mods/$(basename $m).ko"; done
# ext4 (which mounts busybox's ext2) and what it needs, for the fstrim check; loaded in
# this order by init.
kd="$x/kernel/usr/lib/modules/$kver/kernel"
for m in crypto/crc32c_generic lib/crc16 fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4; do
  xz -dc "$kd/$m.ko.xz" > "$r/mods/$(basename $m).ko"
done
cp "$vm_here/guest/init" "$r/init"; chmod 755 "$r/init"
rm -f "$out"/initrd.*.cpio.gz
(cd "$r" && find . | cpio -o -H newc --quiet | gzip -6 > "$out/initrd.$stamp.cpio.gz")
rm -rf "$x"
echo "$out/vmlinuz $out/initrd.$stamp.cpio.gz"
