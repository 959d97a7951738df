#!/usr/bin/env python3
"""scripts/test_summary.py — count one build's test cases honestly from meson's logs.

Usage: test_summary.py BUILD_DIR
Reads BUILD_DIR/meson-logs/testlog.junit.xml (GoogleTest cases merged by meson, one
case per shell test) and prints, on the last line, "COUNTS passed failed skipped"; before
it, one "SKIP name: reason" line per skipped case. A skipped case is never a pass. A
shell test that exits 77 carries its reason on a stdout line starting "SKIP" (read from
testlog.json). Exits 2 when the log is missing: a build that ran no test counts as failed.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET


def shell_skip_reasons(build):
    """name -> reason for whole tests meson marked SKIP (exit status 77)."""
    reasons = {}
    path = os.path.join(build, "meson-logs", "testlog.json")
    if not os.path.exists(path):
        return reasons
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("result") != "SKIP":
                continue
            said = [l for l in (entry.get("stdout") or "").splitlines() if l.startswith("SKIP")]
            reasons[entry.get("name", "?")] = said[-1] if said else "no reason printed"
    return reasons


def main():
    build = sys.argv[1]
    junit = os.path.join(build, "meson-logs", "testlog.junit.xml")
    if not os.path.exists(junit):
        print(f"no test log in {build}")
        print("COUNTS 0 1 0")
        return 2
    shell_reasons = shell_skip_reasons(build)
    passed = failed = skipped = 0
    for suite in ET.parse(junit).getroot().iter("testsuite"):
        suite_name = suite.get("name", "")
        cases = suite.findall("testcase")
        # A suite-level failure with no case (a crashed binary) is a failure too.
        if not cases and int(suite.get("failures", 0)) + int(suite.get("errors", 0)) > 0:
            failed += 1
            continue
        for case in cases:
            name = f"{suite_name.split(' / ')[-1]}.{case.get('name')}".lstrip(".")
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None:
                skipped += 1
                reason = (case.find("skipped").get("message") or "").strip().splitlines()
                reason = reason[-1] if reason else shell_reasons.get(case.get("name"), "no reason given")
                print(f"SKIP {name}: {reason}")
            else:
                passed += 1
    print(f"COUNTS {passed} {failed} {skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
