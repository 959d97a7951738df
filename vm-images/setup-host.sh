#!/usr/bin/env bash
# vm-images/setup-host.sh — QEMU 10 (bookworm-backports) and the guest-build tools; with
# --qemu-utils also qemu-img and qemu-storage-daemon from the same backports (benchmarks);
# with --qemu-rbd also their rbd block driver (qemu-block-extra, the same backports
# version: QEMU refuses a module of another build).
# apt's system configuration is not touched: backports come through a private source
# list in the cache. Idempotent: does nothing when QEMU >= 10 is already installed.
source "$(dirname "$0")/lib.sh"
# The major version COMMAND reports (0 when it is missing).
major() { "$1" --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1; }
sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
# bpo_install PACKAGE COMMAND WHAT: PACKAGE from bookworm-backports unless COMMAND is >= 10.
bpo_install() {
  local v; v=$(major "$2" || true); v=${v:-0}
  if [ "$v" -ge 10 ]; then vm_say "$3 $v already installed"; return; fi
  vm_say "installing $3 from bookworm-backports (private apt lists in $vm_cache)"
  local opts; opts=$(vm_apt_opts bpo bookworm bookworm-updates bookworm-backports)
  # shellcheck disable=SC2086
  "${sudo[@]}" apt-get $opts update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get $opts install -y -q --no-install-recommends \
    -t bookworm-backports "$1"
}
for opt in "$@"; do
  case $opt in
    --qemu-utils | --qemu-rbd) ;;
    *) echo "setup-host.sh: unknown option $opt (known: --qemu-utils, --qemu-rbd)" >&2; exit 2 ;;
  esac
done
bpo_install qemu-system-x86 qemu-system-x86_64 "QEMU"
for opt in "$@"; do
  case $opt in
    --qemu-utils) bpo_install qemu-utils qemu-img "qemu-utils (qemu-img, qemu-storage-daemon)" ;;
    --qemu-rbd)
      bpo_install qemu-utils qemu-img "qemu-utils (qemu-img, qemu-storage-daemon)"
      want=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
      case $want in
        *bpo12*) ;;
        *) echo "setup-host.sh: --qemu-rbd needs qemu-utils from bookworm-backports (QEMU's rbd module" \
                "must match its build); installed: ${want:-none}" >&2; exit 1 ;;
      esac
      if [ "$(dpkg-query -W -f='${Version}' qemu-block-extra 2>/dev/null || true)" = "$want" ]; then
        vm_say "qemu-block-extra $want already installed"
      else
        vm_say "installing qemu-block-extra $want (QEMU's rbd driver) from bookworm-backports"
        opts=$(vm_apt_opts bpo bookworm bookworm-updates bookworm-backports)
        # shellcheck disable=SC2086
        "${sudo[@]}" apt-get $opts update -q
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get $opts install -y -q --no-install-recommends \
          "qemu-block-extra=$want"
      fi ;;
    *) echo "setup-host.sh: unknown option $opt" >&2; exit 2 ;;
  esac
done
need=()
for p in cpio xz-utils gcc libc6-dev binutils python3; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  vm_say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${need[@]}"
fi
qemu-system-x86_64 --version | head -1
