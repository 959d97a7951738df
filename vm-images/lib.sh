# vm-images/lib.sh — shared by the vm-images scripts (sourced).
# Cache: $UNTORN_VM_CACHE (default ~/.cache/untorn-vm), kept between runs, outside git.
# The Debian mirror is read from this machine's apt configuration, never written here.
set -euo pipefail
vm_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vm_repo=$(cd "$vm_here/.." && pwd)
vm_cache=${UNTORN_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/untorn-vm}
mkdir -p "$vm_cache"

vm_say() { echo "==> $*" >&2; }

# The first Debian mirror URI in the apt sources (deb822 .sources or one-line .list).
vm_mirror() {
  local m=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
    [ -n "$m" ] && break
  done
  if [ -z "$m" ]; then
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; exit } }')
  fi
  [ -n "$m" ] || { echo "vm-images: cannot find a Debian mirror in the apt configuration" >&2; return 1; }
  echo "$m"
}

# apt options for a private suite list in the cache: vm_apt_opts NAME SUITES...
vm_apt_opts() {
  local name=$1; shift
  local dir="$vm_cache/apt-$name"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  cat > "$dir/apt.sources" <<EOT
Types: deb
URIs: $(vm_mirror)
Suites: $*
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
  echo "-o Dir::Etc::sourcelist=$dir/apt.sources -o Dir::Etc::sourceparts=/dev/null -o Dir::State::Lists=$dir/lists -o Dir::Cache=$dir/cache"
}
