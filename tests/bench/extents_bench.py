#!/usr/bin/env python3
"""tests/bench/extents_bench.py — the driver of tests/bench/extents.sh (run that one).

Block status and sparse images: untorn against nbdkit file, nbdkit file with the
cacheextents filter and qemu-storage-daemon, serving the same sparse images in the same
run, each on a unix socket. Per image (N separate 4 KiB data extents) and target, per
round (targets interleaved within a round): qemu-img map cold (first walk after the
server starts) and warm (the second), a REQ_ONE walk (status_walk, queries/s), nbdinfo
--map, and qemu-img convert -O raw to a sparse local file. Every map is checked against
nbdkit file's (same data extents) so no fast wrong answer counts. Then reads of a never
written image (fio, JSON) against nbdkit memory. Medians of the rounds; TSV in OUT.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_server import Server

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(REPO, "build")
PLUGIN = os.path.join(BUILD, "plugin", "nbdkit-untorn-plugin.so")
LISTEN = os.path.join(BUILD, "tools", "untorn-listen")
WALK = os.path.join(BUILD, "tests", "status_walk")
GiB = 1 << 30


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def make_image(path, size, extents):
    """A sparse file of `size` with `extents` separate 4 KiB data extents, evenly spread."""
    step = size // extents // 4096 * 4096
    block = os.urandom(4096)
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    try:
        os.ftruncate(fd, size)
        for i in range(extents):
            os.pwrite(fd, block, i * step + 4096 * (i % 3))
        os.fsync(fd)
    finally:
        os.close(fd)


def start(target, image, work, extra=()):
    sock = os.path.join(work, f"{target}.sock")
    log = os.path.join(work, f"{target}.log")
    if os.path.exists(sock):
        os.unlink(sock)
    nbdkit = ["nbdkit", "-f", "--exit-with-parent"]
    if target == "untorn":
        argv = [LISTEN, "--unix", sock, "--"] + nbdkit + ["-D", "untorn.stats=1", PLUGIN,
                                                         f"backing.path={image}"] + list(extra)
        return Server(target, argv, sock, log, True)
    if target == "nbdkit-file":
        return Server(target, [LISTEN, "--unix", sock, "--"] + nbdkit + ["file", image], sock, log, True)
    if target == "nbdkit-cacheextents":
        return Server(target, [LISTEN, "--unix", sock, "--"] + nbdkit + ["--filter=cacheextents", "file", image],
                      sock, log, True)
    if target == "nbdkit-memory":
        return Server(target, [LISTEN, "--unix", sock, "--"] + nbdkit + ["memory", str(os.path.getsize(image))],
                      sock, log, True)
    if target == "qemu-storage-daemon":
        argv = ["qemu-storage-daemon",
                "--blockdev", f"driver=file,node-name=disk,filename={image},cache.direct=off",
                "--nbd-server", f"addr.type=unix,addr.path={sock}",
                "--export", "type=nbd,id=e,node-name=disk,name=disk,writable=on"]
        return Server(target, argv, sock, log, False)
    raise ValueError(target)


def timed(argv, stdout=subprocess.DEVNULL):
    t = time.monotonic()
    r = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr}")
    return time.monotonic() - t, r.stdout


def data_extents(map_json):
    """qemu-img map's JSON as merged [start, end) runs of data."""
    runs = []
    for e in json.loads(map_json):
        if not e["data"]:
            continue
        if runs and runs[-1][1] == e["start"]:
            runs[-1][1] = e["start"] + e["length"]
        else:
            runs.append([e["start"], e["start"] + e["length"]])
    return runs


def extent_map_stats(log):
    text = open(log).read()
    found = re.findall(r"stats at exit: .*", text)
    if not found:
        return None
    kv = dict(re.findall(r"(\w+)=(\d+)", found[-1]))
    return int(kv.get("extent_entries", 0)), int(kv.get("extent_bytes", 0)), int(kv.get("extent_probes", 0))


def run_image(n, size, targets, rounds, work, results, reference):
    image = os.path.join(work, f"img{n}.raw")
    say(f"== image: {size // GiB} GiB sparse, {n} data extents of 4 KiB")
    make_image(image, size, n)
    for rnd in range(rounds):
        for target in targets:
            say(f"  round {rnd + 1}: {target}")
            srv = start(target, image, work)
            try:
                cold, cold_json = timed(["qemu-img", "map", "--output=json", "-f", "raw", srv.uri],
                                        stdout=subprocess.PIPE)
                warm, warm_json = timed(["qemu-img", "map", "--output=json", "-f", "raw", srv.uri],
                                        stdout=subprocess.PIPE)
                got = data_extents(warm_json)
                if data_extents(cold_json) != got:
                    raise RuntimeError(f"{target}: the cold and warm maps differ")
                key = n
                if target == "nbdkit-file":
                    reference[key] = got
                elif key in reference and reference[key] != got:
                    raise RuntimeError(f"{target}: map differs from nbdkit file's on the {n}-extent image")
                _, walk_out = timed([WALK, srv.uri], stdout=subprocess.PIPE)
                qps = float(re.search(r"queries_per_s (\S+)", walk_out).group(1))
                queries = int(re.search(r"queries (\d+)", walk_out).group(1))
                info, _ = timed(["nbdinfo", "--map", srv.uri])
                out = os.path.join(work, "convert.raw")
                conv, _ = timed(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, out])
                os.unlink(out)
            finally:
                srv.stop()
            row = results.setdefault((n, target), {"map_cold": [], "map_warm": [], "walk_qps": [],
                                                    "nbdinfo_map": [], "convert": [], "queries": queries})
            row["map_cold"].append(cold)
            row["map_warm"].append(warm)
            row["walk_qps"].append(qps)
            row["nbdinfo_map"].append(info)
            row["convert"].append(conv)
            if target == "untorn":
                row["extent_map"] = extent_map_stats(srv.log)
    os.unlink(image)


def fio_read(srv, size, runtime):
    argv = ["fio", "--name=r", "--ioengine=nbd", f"--uri={srv.uri}", "--rw=read", "--bs=1M",
            "--iodepth=8", f"--size={size}", "--output-format=json"]
    if runtime:
        argv += [f"--runtime={runtime}"]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"fio failed: {r.stderr}")
    job = json.loads(r.stdout[r.stdout.index("{"):])["jobs"][0]["read"]
    pct = job["clat_ns"].get("percentile", {})
    return job["bw"] / 1024, pct.get("50.000000", 0) / 1000, pct.get("99.000000", 0) / 1000


def med(v):
    return statistics.median(v) if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--extents", default="1000 10000 100000")
    ap.add_argument("--size", type=int, default=64, help="image size in GiB")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--read-size", type=int, default=4, help="never-written read, GiB")
    ap.add_argument("--out", default=os.getcwd())
    ap.add_argument("--quick", action="store_true", help="one small image, one round (smoke test)")
    a = ap.parse_args()
    if a.quick:
        a.extents, a.rounds, a.size, a.read_size = "1000", 1, 8, 1
    targets = ["untorn", "nbdkit-file", "nbdkit-cacheextents", "qemu-storage-daemon"]
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="untorn-extents-bench.", dir=os.environ.get("TMPDIR", "/tmp"))
    results, reference = {}, {}
    try:
        # nbdkit file first in each round, so every other map is checked against it.
        order = ["nbdkit-file"] + [t for t in targets if t != "nbdkit-file"]
        for n in [int(x) for x in a.extents.split()]:
            run_image(n, a.size * GiB, order, a.rounds, work, results, reference)
        # Reads of a device never written: the map answers "hole", no device I/O.
        image = os.path.join(work, "empty.raw")
        with open(image, "wb") as f:
            f.truncate(a.read_size * GiB)
        reads = {}
        for rnd in range(a.rounds):
            for target in ["untorn", "nbdkit-memory", "nbdkit-file"]:
                say(f"  never-written read, round {rnd + 1}: {target}")
                srv = start(target, image, work)
                try:
                    reads.setdefault(target, []).append(fio_read(srv, f"{a.read_size}G", 0))
                finally:
                    srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    tsv = os.path.join(a.out, "extents_bench.tsv")
    lines = ["extents\ttarget\tmap_cold_s\tmap_warm_s\twalk_queries_per_s\tnbdinfo_map_s\tconvert_s\t"
             "untorn_cold_over_best\tuntorn_warm_over_best"]
    print(f"\n== block status: medians of {a.rounds} round(s); times in seconds, lower is better")
    hdr = f"{'extents':>8} {'target':<22} {'map cold':>9} {'map warm':>9} {'walk q/s':>9} {'nbdinfo':>8} {'convert':>8}"
    print(hdr)
    for n in [int(x) for x in a.extents.split()]:
        rows = {t: results[(n, t)] for t in targets if (n, t) in results}
        anchors = [t for t in rows if t != "untorn"]
        best_cold = min(med(rows[t]["map_cold"]) for t in anchors)
        best_warm = min(med(rows[t]["map_warm"]) for t in anchors)
        for t, r in rows.items():
            print(f"{n:>8} {t:<22} {med(r['map_cold']):>9.3f} {med(r['map_warm']):>9.3f} "
                  f"{med(r['walk_qps']):>9.0f} {med(r['nbdinfo_map']):>8.3f} {med(r['convert']):>8.3f}")
        u = rows["untorn"]
        cold_ratio, warm_ratio = med(u["map_cold"]) / best_cold, med(u["map_warm"]) / best_warm
        em = u.get("extent_map")
        print(f"{'':>8} untorn / best anchor: map cold {cold_ratio:.2f}x (target <= 1.2), "
              f"map warm {warm_ratio:.2f}x (target <= 1.0); walk {u['queries']} queries; "
              + (f"extent map {em[0]} entries, {em[1] / 1024:.0f} KiB, {em[2]} probes" if em else "extent map: no stats"))
        for t, r in rows.items():
            lines.append(f"{n}\t{t}\t{med(r['map_cold']):.4f}\t{med(r['map_warm']):.4f}\t{med(r['walk_qps']):.0f}\t"
                         f"{med(r['nbdinfo_map']):.4f}\t{med(r['convert']):.4f}\t{cold_ratio:.3f}\t{warm_ratio:.3f}")
    ns = [int(x) for x in a.extents.split()]
    if len(ns) > 1:
        u_small, u_big = results[(ns[0], "untorn")], results[(ns[-1], "untorn")]
        growth = med(u_small["walk_qps"]) / med(u_big["walk_qps"])
        print(f"untorn warm cost per query at {ns[-1]} extents / at {ns[0]}: {growth:.2f}x (target <= 1.5)")
    print(f"\n== reading {a.read_size} GiB never written (fio nbd, 1M sequential, QD8): medians")
    print(f"{'target':<22} {'MiB/s':>9} {'p50 us':>9} {'p99 us':>9}")
    for t, runs in reads.items():
        print(f"{t:<22} {med([x[0] for x in runs]):>9.0f} {med([x[1] for x in runs]):>9.0f} {med([x[2] for x in runs]):>9.0f}")
        lines.append(f"read-never-written\t{t}\t{med([x[0] for x in runs]):.1f} MiB/s\tp50 {med([x[1] for x in runs]):.0f} us\t"
                     f"p99 {med([x[2] for x in runs]):.0f} us")
    ratio = med([x[0] for x in reads["untorn"]]) / med([x[0] for x in reads["nbdkit-memory"]])
    print(f"untorn / nbdkit memory: {ratio:.2f}x (target >= 0.9)")
    with open(tsv, "w") as f:
        f.write("\n".join(lines) + "\n")
    say(f"rows written to {tsv}")


if __name__ == "__main__":
    main()
