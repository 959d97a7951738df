#!/usr/bin/env python3
"""Copy kernel modules and their dependencies (the .modinfo "depends=" of each module),
decompressed, into OUT as NAME.ko, and print their names in load order (dependencies first).
usage: kmods.py MODULES_DIR OUT NAME... (a NAME starting with '?' may be missing: built in,
or absent from this kernel). Needs no depmod: Debian's packages ship no modules.dep."""
import lzma, os, sys

root, out, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
paths = {}
for d, _, files in os.walk(root):
    for f in files:
        for ext in ('.ko.xz', '.ko'):
            if f.endswith(ext):
                paths[f[:-len(ext)].replace('-', '_')] = os.path.join(d, f)

def load(name):
    path = paths[name]
    with open(path, 'rb') as f:
        data = f.read()
    return lzma.decompress(data) if path.endswith('.xz') else data

def depends(data):
    at = data.find(b'\0depends=')
    if at < 0:
        return []
    value = data[at + 9:data.index(b'\0', at + 9)].decode()
    return [d.replace('-', '_') for d in value.split(',') if d]

order, seen = [], set()
def visit(name, optional):
    if name in seen:
        return
    if name not in paths:
        if optional:
            return
        sys.exit(f'kmods.py: no module {name} under {root}')
    seen.add(name)
    data = load(name)
    for dep in depends(data):
        visit(dep, False)
    with open(os.path.join(out, name + '.ko'), 'wb') as f:
        f.write(data)
    order.append(name)

os.makedirs(out, exist_ok=True)
for w in wanted:
    visit(w.lstrip('?').replace('-', '_'), w.startswith('?'))
print('\n'.join(order))
