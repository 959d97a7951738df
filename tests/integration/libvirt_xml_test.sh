#!/usr/bin/env bash
# contrib/libvirt/untorn-guest.xml and untorn-guest-qemu11.xml validate against libvirt's domain schema
# (virt-xml-validate), and its QEMU arguments are the ones untorn-config prints for the
# default config (so the example cannot drift from the tool).
# Needs UNTORN_CONFIG, UNTORN_SOURCE_ROOT; virt-xml-validate (libvirt-clients).
set -euo pipefail
command -v virt-xml-validate >/dev/null || { echo "SKIP: virt-xml-validate is not installed (apt-get install libvirt-clients)"; exit 77; }
# untorn-guest.xml: QEMU 10 (controller-level limits only); untorn-guest-qemu11.xml: QEMU 11
# (the namespace's too, which Linux 7.x guests read).
fail() { echo "FAIL: $*" >&2; exit 1; }
check() {
  local xml="$UNTORN_SOURCE_ROOT/contrib/libvirt/$1" ns_atomic=$2 out args want
  out=$(virt-xml-validate "$xml" domain 2>&1) || fail "virt-xml-validate $1: $out"
  echo "ok: $out"
  # Every <qemu:arg> is compared: one a line, in the form the sed reads.
  [ "$(grep -o '<qemu:arg' "$xml" | wc -l)" = "$(grep -c "^ *<qemu:arg value='[^']*'/>\$" "$xml")" ] ||
    fail "$1: a <qemu:arg> is not alone on its line as <qemu:arg value='...'/>"
  grep -q "^ *<qemu:arg value='nvme,.*,bus=pci.9'/>\$" "$xml" || fail "$1: the nvme controller is not on bus=pci.9"
  args=$(sed -n "s/.*<qemu:arg value='\([^']*\)'\/>.*/\1/p" "$xml" | tr '\n' ' ' | sed 's/,bus=pci.9//; s/ $//')
  want="$("$UNTORN_CONFIG" --qemu-blockdev untorn0 /run/untorn/disk0.sock) $("$UNTORN_CONFIG" --qemu-nvme-args untorn0 --id untornnvme0 --ns-atomic "$ns_atomic" "$UNTORN_SOURCE_ROOT/conf/default.yaml" backing.path=/x)"
  [ "$args" = "$want" ] || fail "$1: the XML's QEMU arguments differ from untorn-config's (--ns-atomic $ns_atomic):
  xml:           $args
  untorn-config: $want"
  # The comment names the command that printed them.
  grep -qF -- "-\\-ns-atomic $ns_atomic" "$xml" || fail "$1: its comment does not name --ns-atomic $ns_atomic"
  echo "libvirt example $1: ok"
}
check untorn-guest.xml off
check untorn-guest-qemu11.xml on
