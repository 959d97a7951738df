#!/usr/bin/env bash
# vm-images/setup-host.sh — QEMU 10 (bookworm-backports) and the guest-build tools; with
# --qemu-utils also qemu-img and qemu-storage-daemon from the same backports (benchmarks).
# apt's system configuration is not touched: backports come through a private source
# list in the cache. Idempotent: does nothing when QEMU >= 10 is already installed.
source "$(dirname "$0")/lib.sh"
qemu_major() { qemu-system-x86_64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1; }
utils_major() { qemu-img --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1; }
want_utils=0; [ "${1:-}" = --qemu-utils ] && want_utils=1
sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
if [ "$(qemu_major || echo 0)" -ge 10 ] 2>/dev/null; then
  vm_say "QEMU $(qemu_major) already installed"
else
  vm_say "installing QEMU 10 from bookworm-backports (private apt lists in $vm_cache)"
  # shellcheck disable=SC2046
  opts=$(vm_apt_opts bpo bookworm bookworm-updates bookworm-backports)
  # shellcheck disable=SC2086
  "${sudo[@]}" apt-get $opts update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get $opts install -y -q --no-install-recommends \
    -t bookworm-backports qemu-system-x86
fi
if [ $want_utils = 1 ]; then
  if [ "$(utils_major || echo 0)" -ge 10 ] 2>/dev/null; then
    vm_say "qemu-utils $(utils_major) already installed"
  else
    vm_say "installing qemu-utils (qemu-img, qemu-storage-daemon) from bookworm-backports"
    opts=$(vm_apt_opts bpo bookworm bookworm-updates bookworm-backports)
    # shellcheck disable=SC2086
    "${sudo[@]}" apt-get $opts update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get $opts install -y -q --no-install-recommends \
      -t bookworm-backports qemu-utils
  fi
fi
need=()
for p in cpio xz-utils gcc libc6-dev binutils python3; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  vm_say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${need[@]}"
fi
qemu-system-x86_64 --version | head -1
