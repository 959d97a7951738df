#!/usr/bin/env bash
# scripts/deps.sh — install the Debian packages untorn needs, only those missing.
# Usage: scripts/deps.sh [build|test|bench]   (default: test, which includes build)
# Runs apt-get as root, or through sudo when not root. Prints what it installs.
set -euo pipefail

profile=${1:-test}
build_pkgs=(meson ninja-build g++ pkg-config nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin
            libaio-dev libyaml-cpp-dev librbd-dev librados-dev)
test_pkgs=(libgtest-dev libgmock-dev gnutls-bin libvirt-clients man-db systemd xfsprogs
           e2fsprogs util-linux clang libclang-rt-14-dev
           ceph-mon ceph-osd ceph-common)  # a throwaway cluster: scripts/ceph_cluster.sh
bench_pkgs=(fio libnbd-bin gnuplot-nox)

case $profile in
  build) wanted=("${build_pkgs[@]}") ;;
  test) wanted=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) wanted=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "deps.sh: unknown profile '$profile' (build, test or bench)" >&2; exit 2 ;;
esac

missing=()
for p in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
  echo "deps.sh: not root and no sudo; install them with: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "==> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
