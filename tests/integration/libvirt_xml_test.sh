#!/usr/bin/env bash
# contrib/libvirt/untorn-guest.xml validates against libvirt's domain schema
# (virt-xml-validate), and its QEMU arguments are the ones untorn-config prints for the
# default config (so the example cannot drift from the tool).
# Needs UNTORN_CONFIG, UNTORN_SOURCE_ROOT; virt-xml-validate (libvirt-clients).
set -euo pipefail
command -v virt-xml-validate >/dev/null || { echo "SKIP: virt-xml-validate is not installed (apt-get install libvirt-clients)"; exit 77; }
xml="$UNTORN_SOURCE_ROOT/contrib/libvirt/untorn-guest.xml"
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$(virt-xml-validate "$xml" domain 2>&1) || fail "virt-xml-validate: $out"
echo "ok: $out"
args=$(sed -n "s/.*<qemu:arg value='\([^']*\)'\/>.*/\1/p" "$xml" | tr '\n' ' ' | sed 's/,bus=pci.9//; s/ $//')
want="$("$UNTORN_CONFIG" --qemu-blockdev untorn0 /run/untorn/disk0.sock) $("$UNTORN_CONFIG" --qemu-nvme-args untorn0 --id untornnvme0 --ns-atomic off "$UNTORN_SOURCE_ROOT/conf/default.yaml" backing.path=/x)"
[ "$args" = "$want" ] || fail "the XML's QEMU arguments differ from untorn-config's:
  xml:           $args
  untorn-config: $want"
echo "libvirt example: ok"
