#!/usr/bin/env python3
"""Print the DT_NEEDED closure (paths relative to SYSROOT) of ELF files, searched only in SYSROOT.
usage: elfclosure.py SYSROOT ELF..."""
import os, re, subprocess, sys

root, targets = sys.argv[1], sys.argv[2:]
dirs = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib64', 'usr/lib', 'lib',
        'usr/lib/x86_64-linux-gnu/ceph']

def readelf(flag, path):
    return subprocess.run(['readelf', flag, path], capture_output=True, text=True).stdout

result, seen, todo = set(), set(), list(targets)
m = re.search(r'interpreter: (\S+)\]', readelf('-l', targets[0]))
if m:
    result.add(m.group(1).lstrip('/'))
while todo:
    for lib in re.findall(r'\(NEEDED\).*\[(.+?)\]', readelf('-d', todo.pop())):
        if lib in seen:
            continue
        seen.add(lib)
        found = next((os.path.join(root, d, lib) for d in dirs if os.path.exists(os.path.join(root, d, lib))), None)
        if not found:
            print('MISSING', lib, file=sys.stderr)
            continue
        result.add(os.path.relpath(found, root))
        todo.append(found)
print('\n'.join(sorted(result)))
