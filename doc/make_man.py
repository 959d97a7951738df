#!/usr/bin/env python3
"""Fills doc/nbdkit-untorn-plugin.1.in: @VERSION@, and @PARAMETERS@ from
`untorn-config --man-parameters` (the loader's own key table).
usage: make_man.py TEMPLATE UNTORN_CONFIG VERSION OUTPUT"""
import subprocess
import sys

template, tool, version, output = sys.argv[1:5]
parameters = subprocess.run([tool, "--man-parameters"], check=True, capture_output=True,
                            text=True).stdout
text = open(template, encoding="utf-8").read()
text = text.replace("@VERSION@", version).replace("@PARAMETERS@\n", parameters)
with open(output, "w", encoding="utf-8") as out:
    out.write(text)
