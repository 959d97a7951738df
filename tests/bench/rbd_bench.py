#!/usr/bin/env python3
"""tests/bench/rbd_bench.py — the driver of tests/bench/rbd.sh (run that one).

untorn over Ceph RBD against QEMU's rbd driver (qemu-storage-daemon) and fio's rbd engine,
on one throwaway cluster (scripts/ceph_cluster.sh: memstore by default, --bluestore for
a sparse file on this machine's disk), same run, interleaved rounds; fio JSON: IOPS, MiB/s,
p50/p99 completion latency; untorn's IOPS over each row's.

Sections (fio job, QD32, one connection, 1 GiB working set of a 1 GiB image):
  rand4k-write, rand4k-read, rand64k-write, rand64k-read
      on an image of 4M objects (RBD's default): 64K writes never cross an object.
      Reads follow one unmeasured sequential 1M read pass (every target gets it; untorn
      keeps what it read, librbd's cache holds 32 MiB).
  cross64k-write
      64K writes at 4K-aligned offsets on an image of 64K objects: 15 in 16 cross an
      object boundary, which untorn sends through its journal (a RADOS object) to keep
      them whole, and librbd splits into two independent RADOS ops (tearable). The rows
      with -journal-off (journal.mode=never, test-only and unsafe: such writes can tear)
      give the journal's cost.
Targets:
  untorn              writeback cache (the default configuration)
  untorn-writethrough cache.mode=writethrough: every write on the OSDs before its reply,
                      like the uncached rows below
  nbdkit-memory       the NBD protocol's ceiling on this machine (the anchor)
  qsd-rbd             qemu-storage-daemon, rbd driver, cache.direct=off (QEMU then turns
                      librbd's cache on; given rbd_cache_writethrough_until_flush=false,
                      since fio sends no flush, it is a writeback cache from the start:
                      replies before the OSDs have the data)
  qsd-rbd-direct      the same with cache.direct=on (librbd cache off)
  fio-rbd             fio's rbd engine: librbd straight, no NBD hop, no cache
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench_server import Server
from compare_bench import Skip, figures, finish, fio_json, med, run_rounds, say, select

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GiB = 1 << 30
MiB = 1 << 20
IMAGE_SIZE = GiB


class Section:
    def __init__(self, name, rw, bs, image, untorn_variants, extra=()):
        self.name, self.rw, self.bs, self.image = name, rw, bs, image
        self.untorn_variants, self.extra = untorn_variants, list(extra)

    @property
    def direction(self):
        return "read" if "read" in self.rw else "write"

    @property
    def warm(self):
        return ["--rw=read", "--bs=1M", "--iodepth=8", f"--size={IMAGE_SIZE}", "--output-format=json"] \
            if self.direction == "read" else None

    def fio_job(self, runtime, ramp):
        return [f"--rw={self.rw}", f"--bs={self.bs}", "--iodepth=32", f"--size={IMAGE_SIZE}",
                "--time_based", f"--runtime={runtime}", f"--ramp_time={ramp}", "--randrepeat=1",
                "--norandommap", "--output-format=json"] + self.extra


WRITETHROUGH = ["cache.mode=writethrough"]
JOURNAL_OFF = ["journal.mode=never", "test.unsafe_allow_journal_never=true"]


def sections():
    plain = {"untorn": [], "untorn-writethrough": WRITETHROUGH}
    return [
        Section("rand4k-write", "randwrite", "4k", "rbd/bench", plain),
        Section("rand4k-read", "randread", "4k", "rbd/bench", plain),
        Section("rand64k-write", "randwrite", "64k", "rbd/bench", plain),
        Section("rand64k-read", "randread", "64k", "rbd/bench", plain),
        Section("cross64k-write", "randwrite", "64k", "rbd/bench64k",
                plain | {"untorn-journal-off": JOURNAL_OFF,
                         "untorn-writethrough-journal-off": WRITETHROUGH + JOURNAL_OFF},
                extra=["--blockalign=4k"]),
    ]


ANCHORS = ["nbdkit-memory", "qsd-rbd", "qsd-rbd-direct", "fio-rbd"]


class Cluster:
    """The throwaway cluster, with the two images every section uses."""

    def __init__(self, work, bluestore):
        self.dir = os.path.join(work, "ceph")
        self.script = os.path.join(REPO, "scripts", "ceph_cluster.sh")
        argv = [self.script, "start", self.dir, "--image", "rbd/bench", "--size", f"{IMAGE_SIZE // MiB}M",
                "--owner", str(os.getpid())] + (["--bluestore"] if bluestore else [])
        say("starting a throwaway Ceph cluster (" + ("BlueStore" if bluestore else "memstore") + ") ...")
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/ceph_cluster.sh start failed:\n{r.stderr[-3000:]}")
        self.conf = os.path.join(self.dir, "ceph.conf")
        os.environ["CEPH_CONF"] = self.conf  # fio's rbd engine reads its ceph.conf from there
        # qsd-rbd's: librbd's cache stays writethrough until the client's first flush
        # (rbd_cache_writethrough_until_flush), and fio never sends one.
        self.writeback_conf = os.path.join(work, "ceph-writeback.conf")
        with open(self.conf) as f, open(self.writeback_conf, "w") as out:
            for line in f:
                out.write(line)
                if line.strip() == "[client]":
                    out.write("rbd cache writethrough until flush = false\n")
        try:
            self.rbd(["create", "--size", f"{IMAGE_SIZE // MiB}M", "--object-size", "64K", "rbd/bench64k"])
            # Every target reads data, not holes: both images written once, sequentially.
            for image in ("rbd/bench", "rbd/bench64k"):
                say(f"filling {image} ...")
                fio_json(self.fio_rbd(image, "fill") + ["--rw=write", "--bs=4M", "--iodepth=8",
                                                        f"--size={IMAGE_SIZE}", "--output-format=json"])
        except BaseException:
            self.stop()
            raise

    def rbd(self, args):
        r = subprocess.run(["timeout", "120", "rbd", "--conf", self.conf] + args, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"rbd {' '.join(args)}: {r.stderr.strip()}")

    def fio_rbd(self, image, name):
        pool, rbdname = image.split("/")
        # fio's rbd engine reads its ceph.conf from CEPH_CONF (set above).
        return ["fio", f"--name={name}", "--ioengine=rbd", "--clientname=admin", f"--pool={pool}",
                f"--rbdname={rbdname}"]

    def stop(self):
        subprocess.run([self.script, "stop", self.dir], capture_output=True)


def run_target(b, cluster, sec, target, runtime, ramp):
    """Returns the row's figures; raises Skip for an anchor that cannot run here."""
    if target == "fio-rbd":
        base = cluster.fio_rbd(sec.image, target)
        if sec.warm:
            fio_json(base + sec.warm)
        return figures(fio_json(base + sec.fio_job(runtime, ramp)), sec.direction)
    sock = os.path.join(b, target + ".sock")
    log = os.path.join(b, target + ".log")
    if os.path.exists(sock):
        os.unlink(sock)
    listen = os.path.join(ARGS.build, "tools", "untorn-listen")
    plugin = os.path.join(ARGS.build, "plugin", "nbdkit-untorn-plugin.so")
    if target.startswith("untorn"):
        argv = [listen, "--unix", sock, "--", "nbdkit", "-f", "--exit-with-parent", plugin,
                f"backing.rbd={sec.image}", f"backing.ceph_conf={cluster.conf}"] + sec.untorn_variants[target]
        srv = Server(target, argv, sock, log, True)
    elif target == "nbdkit-memory":
        srv = Server(target, [listen, "--unix", sock, "--", "nbdkit", "-f", "--exit-with-parent", "memory",
                              str(IMAGE_SIZE)], sock, log, True)
    elif target.startswith("qsd-rbd"):
        if not shutil.which("qemu-storage-daemon"):
            raise Skip("qemu-storage-daemon is not installed (vm-images/setup-host.sh --qemu-rbd)")
        pool, image = sec.image.split("/")
        direct = "on" if target == "qsd-rbd-direct" else "off"
        conf = cluster.conf if direct == "on" else cluster.writeback_conf
        argv = ["qemu-storage-daemon",
                "--blockdev", f"driver=rbd,node-name=disk,pool={pool},image={image},conf={conf},"
                              f"cache.direct={direct}",
                "--nbd-server", f"addr.type=unix,addr.path={sock}",
                "--export", "type=nbd,id=e,node-name=disk,name=disk,writable=on"]
        try:
            srv = Server(target, argv, sock, log, False)
        except RuntimeError as e:
            raise Skip(f"qemu-storage-daemon's rbd driver would not start here (vm-images/setup-host.sh "
                       f"--qemu-rbd installs it): {str(e).strip()[-300:]}")
    else:
        raise ValueError(target)
    try:
        base = ["fio", f"--name={target}", "--ioengine=nbd", f"--uri={srv.uri}"]
        if sec.warm:
            fio_json(base + sec.warm)
        row = figures(fio_json(base + sec.fio_job(runtime, ramp)), sec.direction)
    finally:
        srv.stop()
    if srv.proc.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(f"{target} exited with {srv.proc.returncode}: {open(srv.log).read()[-2000:]}")
    return row


ARGS = None


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--runtime", type=int, default=8, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bluestore", action="store_true", help="BlueStore on a sparse file, not memstore")
    ap.add_argument("--out", default=os.getcwd())
    ap.add_argument("--only", default="", help="comma-separated sections")
    ap.add_argument("--anchors", default="", help="comma-separated anchors (default: all)")
    ap.add_argument("--quick", action="store_true", help="one short round (smoke test)")
    a = ARGS = ap.parse_args()
    if a.rounds < 1:
        ap.error("--rounds: want a whole number from 1")
    if a.quick:
        a.runtime, a.rounds = 2, 1
    secs = sections()
    secs, anchors = select(ap, a, secs, ANCHORS)
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="untorn-rbd-bench.", dir=os.environ.get("TMPDIR", "/var/tmp"))
    tsv_rows = ["section\ttarget\tiops\tmibs\tp50_us\tp99_us\tuntorn_over_target\tuntorn_writethrough_over_target"]
    skipped = {}
    started = time.monotonic()
    cluster = None
    try:
        cluster = Cluster(work, a.bluestore)
        for si, sec in enumerate(secs):
            targets = list(sec.untorn_variants) + anchors
            runs = {t: [] for t in targets}
            say(f"== [{si + 1}/{len(secs)}] {sec.name}: {len(targets)} targets x {a.rounds} round(s)"
                f" ({time.monotonic() - started:.0f} s so far)")
            run_rounds(a.rounds, targets, runs, skipped, lambda t: run_target(work, cluster, sec, t, a.runtime, 1))
            print(f"\n== {sec.name}: {sec.rw} bs={sec.bs}{' ' + ' '.join(sec.extra) if sec.extra else ''} QD32, "
                  f"{sec.image}, {IMAGE_SIZE // MiB} MiB; medians of {a.rounds} round(s)")
            print(f"{'target':<32} {'IOPS':>9} {'MiB/s':>8} {'p50 us':>8} {'p99 us':>8} {'untorn/x':>9} {'wt/x':>6}")
            rows = {t: {k: med([r[k] for r in runs[t]]) for k in ("iops", "mibs", "p50", "p99")}
                    for t in targets if runs[t]}
            for need in ("untorn", "untorn-writethrough"):
                if need not in rows:
                    raise RuntimeError(f"{sec.name}: {need} produced no figure")
            u, wt = rows["untorn"]["iops"], rows["untorn-writethrough"]["iops"]
            for t, r in rows.items():
                ratio = u / r["iops"] if r["iops"] > 0 else float("nan")
                wt_ratio = wt / r["iops"] if r["iops"] > 0 else float("nan")
                print(f"{t:<32} {r['iops']:>9.0f} {r['mibs']:>8.1f} {r['p50']:>8.0f} {r['p99']:>8.0f} "
                      f"{ratio:>9.2f} {wt_ratio:>6.2f}")
                tsv_rows.append(f"{sec.name}\t{t}\t{r['iops']:.0f}\t{r['mibs']:.1f}\t{r['p50']:.0f}\t"
                                f"{r['p99']:.0f}\t{ratio:.3f}\t{wt_ratio:.3f}")
            if "untorn-journal-off" in rows:
                for on, off in (("untorn", "untorn-journal-off"),
                                ("untorn-writethrough", "untorn-writethrough-journal-off")):
                    cost = 1 - rows[on]["iops"] / rows[off]["iops"] if rows[off]["iops"] > 0 else float("nan")
                    print(f"journal cost, {on}: {cost * 100:.0f} % of the IOPS without it "
                          f"(p99 {rows[off]['p99']:.0f} -> {rows[on]['p99']:.0f} us)")
            sys.stdout.flush()
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    finish(skipped, os.path.join(a.out, "rbd_bench.tsv"), tsv_rows, started)


if __name__ == "__main__":
    main()
