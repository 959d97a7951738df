#!/usr/bin/env python3
"""tests/bench/compare_bench.py — the driver of tests/bench/compare.sh (run that one).

One benchmark, every section against every anchor, in one run (fio's nbd engine over unix
sockets; fio JSON). Sections (fio job; untorn's configuration):
  rand4k-write-1c, rand4k-write-4c  4K random writes, QD32 in total over 1 or 4
      connections, 1 GiB working set; untorn with a 2 GiB cache and dirty limits that hold
      the working set (untorn), and with the default limits (untorn-default-dirty).
  rand4k-read-1c, rand4k-read-4c    4K random reads of 1 GiB after one sequential 1M write
      pass over it (unmeasured), so every target reads data it holds.
  atomic64k       64K atomic-eligible random writes over 2 GiB through a 256 MiB cache:
      writeback to disk sets the pace; also untorn-atomic-off (journal.mode=never,
      test-only and unsafe): what atomicity costs.
  writethrough4k  4K random writes QD32, cache.mode=writethrough (durable at reply).
  uncached1m      1M sequential writes QD8 of 4 GiB, cache.mode=uncached; peak RSS above
      the idle server is reported (target: <= 64 MiB).
Anchors, started by this script in every section: nbdkit memory; nbdkit file (plain,
cache=none, --filter=fua fuamode=force, --filter=cache); qemu-storage-daemon (page cache;
O_DIRECT with io_uring; O_DIRECT with writethrough=on); fio itself on a file beside the
others (libaio O_DIRECT; with O_DSYNC in writethrough4k): the disk's limit.
Each row: IOPS, MiB/s, p50 and p99 completion latency, peak RSS (VmHWM) and its growth
over the idle server; untorn's IOPS over each row's. --rounds N runs every target of a
section N times interleaved and reports medians (each run is printed too). TSV and a
gnuplot chart go to OUT. --quick: every section and anchor once, small and short (a
smoke test, no thresholds).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench_server import Server

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GiB = 1 << 30
MiB = 1 << 20


def say(msg):
    print(msg, file=sys.stderr, flush=True)


class Skip(Exception):
    """An anchor that cannot run here: reported with its reason, never as a figure."""


class Bench:
    def __init__(self, build, work):
        self.plugin = os.path.join(build, "plugin", "nbdkit-untorn-plugin.so")
        self.listen = os.path.join(build, "tools", "untorn-listen")
        self.work = work

    def path(self, name):
        return os.path.join(self.work, name)

    def fresh_image(self, name, size):
        p = self.path(name)
        for q in (p, p + ".journal"):
            if os.path.exists(q):
                os.unlink(q)
        with open(p, "wb") as f:
            f.truncate(size)
        return p

    def nbdkit(self, name, args):
        sock = self.path(name + ".sock")
        argv = [self.listen, "--unix", sock, "--", "nbdkit", "-f", "--exit-with-parent"] + args
        return Server(name, argv, sock, self.path(name + ".log"), True)

    def qsd(self, name, image, direct, aio, writethrough=False):
        if not shutil.which("qemu-storage-daemon"):
            raise Skip("qemu-storage-daemon is not installed (vm-images/setup-host.sh --qemu-utils)")
        sock = self.path(name + ".sock")
        if os.path.exists(sock):
            os.unlink(sock)
        export = "type=nbd,id=e,node-name=disk,name=disk,writable=on"
        if writethrough:
            export += ",writethrough=on"
        argv = ["qemu-storage-daemon",
                "--blockdev", f"driver=file,node-name=disk,filename={image},"
                              f"cache.direct={'on' if direct else 'off'},aio={aio}",
                "--nbd-server", f"addr.type=unix,addr.path={sock}",
                "--export", export]
        try:
            return Server(name, argv, sock, self.path(name + ".log"), False)
        except RuntimeError as e:
            raise Skip(f"qemu-storage-daemon would not start here: {str(e).strip()[-300:]}")


def fio_json(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"fio failed ({' '.join(argv)}): {r.stderr.strip()[-2000:]}")
    out = r.stdout
    return json.loads(out[out.index("{"):])


def figures(doc, direction):
    """IOPS, MiB/s, p50 and p99 completion latency (us) of the aggregated job."""
    job = doc["jobs"][0][direction]
    pct = job.get("clat_ns", {}).get("percentile", {})
    return {"iops": job["iops"], "mibs": job["bw"] / 1024,
            "p50": pct.get("50.000000", 0) / 1000, "p99": pct.get("99.000000", 0) / 1000}


class Section:
    def __init__(self, name, rw, bs, depth, conns, size, untorn_variants, warm=None, extra=(), dsync_anchor=False):
        self.name, self.rw, self.bs, self.depth, self.conns = name, rw, bs, depth, conns
        self.size, self.untorn_variants, self.warm, self.extra = size, untorn_variants, warm, list(extra)
        self.dsync_anchor = dsync_anchor

    def fio_job(self, runtime, ramp):
        job = [f"--rw={self.rw}", f"--bs={self.bs}", f"--iodepth={self.depth // self.conns}",
               f"--numjobs={self.conns}", f"--size={self.size}", "--group_reporting",
               "--output-format=json"] + self.extra
        if self.rw.startswith("rand"):
            job += ["--time_based", f"--runtime={runtime}", f"--ramp_time={ramp}", "--randrepeat=1", "--norandommap"]
        return job

    @property
    def direction(self):
        return "read" if "read" in self.rw else "write"


def sections(quick):
    ws = 128 * MiB if quick else GiB
    big = 256 * MiB if quick else 2 * GiB
    seq = 256 * MiB if quick else 4 * GiB
    hold = ["cache.size=" + str(2 * ws), "cache.dirty_background_ratio=75", "cache.dirty_ratio=80",
            "cache.dirty_expire=60s"]
    out = []
    for rw in ("randwrite", "randread"):
        for conns in (1, 4):
            variants = {"untorn": hold}
            if rw == "randwrite":
                variants["untorn-default-dirty"] = ["cache.size=" + str(2 * ws)]
            warm = ["--rw=write", "--bs=1M", "--iodepth=8", f"--size={ws}"] if rw == "randread" else None
            out.append(Section(f"rand4k-{rw[4:]}-{conns}c", rw, "4k", 32, conns, ws, variants, warm))
    out.append(Section("atomic64k", "randwrite", "64k", 32, 1, big, {
        "untorn": [f"cache.size={big // 8}"],
        "untorn-atomic-off": [f"cache.size={big // 8}", "journal.mode=never", "test.unsafe_allow_journal_never=true"]}))
    out.append(Section("writethrough4k", "randwrite", "4k", 32, 1, ws,
                       {"untorn": ["cache.mode=writethrough"]}, dsync_anchor=True))
    out.append(Section("uncached1m", "write", "1M", 8, 1, seq, {"untorn": ["cache.mode=uncached"]}))
    return out


ANCHORS = ["nbdkit-memory", "nbdkit-file", "nbdkit-file-nocache", "nbdkit-file-fua-force",
           "nbdkit-file-cache-filter", "qsd", "qsd-direct", "qsd-writethrough", "fio-direct"]


def run_target(b, sec, target, runtime, ramp):
    """Returns the row's figures; raises Skip for an anchor that cannot run here."""
    size = sec.size
    image = b.fresh_image("img.raw", size)
    if target == "fio-direct":
        name = "fio-direct-dsync" if sec.dsync_anchor else "fio-direct"
        base = ["fio", f"--name={name}", "--ioengine=libaio", "--direct=1", f"--filename={image}"]
        if sec.dsync_anchor:
            base.append("--sync=dsync")
        if sec.warm:
            fio_json(base + sec.warm + ["--output-format=json"])
        return figures(fio_json(base + sec.fio_job(runtime, ramp)), sec.direction) | {"peak_rss": 0, "rss_growth": 0}
    if target.startswith("untorn"):
        variant = sec.untorn_variants[target]  # nbdkit options (--x) and untorn keys
        nbdkit_opts = [x for x in variant if x.startswith("--")]
        keys = [x for x in variant if not x.startswith("--")]
        srv = b.nbdkit(target, nbdkit_opts + ["-D", "untorn.stats=1", b.plugin, f"backing.path={image}"] + keys)
    elif target == "nbdkit-memory":
        srv = b.nbdkit(target, ["memory", str(size)])
    elif target == "nbdkit-file":
        srv = b.nbdkit(target, ["file", image])
    elif target == "nbdkit-file-nocache":
        srv = b.nbdkit(target, ["file", image, "cache=none"])
    elif target == "nbdkit-file-fua-force":
        srv = b.nbdkit(target, ["--filter=fua", "file", image, "fuamode=force"])
    elif target == "nbdkit-file-cache-filter":
        srv = b.nbdkit(target, ["--filter=cache", "file", image])
    elif target == "qsd":
        srv = b.qsd(target, image, direct=False, aio="threads")
    elif target == "qsd-direct":
        srv = b.qsd(target, image, direct=True, aio="io_uring")
    elif target == "qsd-writethrough":
        srv = b.qsd(target, image, direct=True, aio="native", writethrough=True)
    else:
        raise ValueError(target)
    try:
        base = ["fio", f"--name={target}", "--ioengine=nbd", f"--uri={srv.uri}"]
        if sec.warm:
            fio_json(base + sec.warm + ["--output-format=json"])
        row = figures(fio_json(base + sec.fio_job(runtime, ramp)), sec.direction)
        peak = srv.peak_rss_kib()
        row["peak_rss"] = peak / 1024
        row["rss_growth"] = max(0, peak - srv.idle_rss_kib) / 1024
    finally:
        srv.stop()
    if srv.proc.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(f"{target} exited with {srv.proc.returncode}: {open(srv.log).read()[-2000:]}")
    return row


def med(v):
    return statistics.median(v) if v else float("nan")


def select(ap, a, secs, all_anchors):
    """The sections --only names (all by default) and the anchors --anchors names."""
    if a.only:
        wanted = a.only.split(",")
        unknown = [w for w in wanted if w not in [s.name for s in secs]]
        if unknown:
            ap.error(f"--only: unknown section(s) {', '.join(unknown)}; sections: {', '.join(s.name for s in secs)}")
        secs = [s for s in secs if s.name in wanted]
    anchors = a.anchors.split(",") if a.anchors else list(all_anchors)
    bad = [x for x in anchors if x not in all_anchors]
    if bad:
        ap.error(f"--anchors: unknown {', '.join(bad)}; anchors: {', '.join(all_anchors)}")
    return secs, anchors


def finish(skipped, tsv, tsv_rows, started):
    """Lists the skipped anchors with their reasons, writes the rows to `tsv`; returns it."""
    if skipped:
        print("\nskipped anchors, with their reasons:")
        for t, why in skipped.items():
            print(f"  {t}: {why}")
    with open(tsv, "w") as f:
        f.write("\n".join(tsv_rows) + "\n")
    print(f"\nrows: {tsv} ({time.monotonic() - started:.0f} s)")
    return tsv


def run_rounds(rounds, targets, runs, skipped, run_one):
    """Runs every target once per round, interleaved; appends each row to runs[target].
    A target that raises Skip is recorded in `skipped` with its reason and not run again."""
    for rnd in range(rounds):
        for t in targets:
            if t in skipped:
                continue
            try:
                row = run_one(t)
            except Skip as e:
                skipped[t] = str(e)
                say(f"  SKIPPED {t}: {e}")
                continue
            runs[t].append(row)
            say(f"  round {rnd + 1} {t}: {row['iops']:.0f} IOPS {row['mibs']:.0f} MiB/s "
                f"p50 {row['p50']:.0f} us p99 {row['p99']:.0f} us")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--runtime", type=int, default=8, help="seconds per random-I/O run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=os.getcwd())
    ap.add_argument("--only", default="", help="comma-separated sections")
    ap.add_argument("--anchors", default="", help="comma-separated anchors (default: all)")
    ap.add_argument("--quick", action="store_true", help="small, short, one round (smoke test)")
    a = ap.parse_args()
    if a.rounds < 1:
        ap.error("--rounds: want a whole number from 1")
    if a.quick:
        a.runtime, a.rounds = 1, 1
    secs = sections(a.quick)
    secs, anchors = select(ap, a, secs, ANCHORS)
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="untorn-compare.", dir=os.environ.get("TMPDIR", "/var/tmp"))
    b = Bench(a.build, work)
    tsv_rows = ["section\ttarget\tiops\tmibs\tp50_us\tp99_us\tpeak_rss_mib\trss_growth_mib\tuntorn_over_target"]
    skipped = {}
    started = time.monotonic()
    try:
        for si, sec in enumerate(secs):
            targets = list(sec.untorn_variants) + anchors
            runs = {t: [] for t in targets}
            say(f"== [{si + 1}/{len(secs)}] {sec.name}: {len(targets)} targets x {a.rounds} round(s)"
                f" ({time.monotonic() - started:.0f} s so far)")
            run_rounds(a.rounds, targets, runs, skipped,
                       lambda t: run_target(b, sec, t, a.runtime, 0 if a.quick else 1))
            print(f"\n== {sec.name}: {sec.rw} bs={sec.bs} QD{sec.depth} on {sec.conns} connection(s), "
                  f"{sec.size // MiB} MiB; medians of {a.rounds} round(s)")
            print(f"{'target':<26} {'IOPS':>9} {'MiB/s':>8} {'p50 us':>8} {'p99 us':>8} {'RSS MiB':>8} "
                  f"{'+idle':>6} {'untorn/x':>9}")
            med_rows = {}
            for t in targets:
                if not runs[t]:
                    continue
                med_rows[t] = {k: med([r[k] for r in runs[t]]) for k in ("iops", "mibs", "p50", "p99")}
                med_rows[t]["peak_rss"] = max(r["peak_rss"] for r in runs[t])
                med_rows[t]["rss_growth"] = max(r["rss_growth"] for r in runs[t])
            if "untorn" not in med_rows:
                raise RuntimeError(f"{sec.name}: untorn produced no figure")
            u = med_rows["untorn"]["iops"]
            for t, r in med_rows.items():
                label = "fio-direct-dsync" if t == "fio-direct" and sec.dsync_anchor else t
                ratio = u / r["iops"] if r["iops"] > 0 else float("nan")
                rss = f"{r['peak_rss']:>8.0f} {r['rss_growth']:>6.0f}" if r["peak_rss"] else f"{'-':>8} {'-':>6}"
                print(f"{label:<26} {r['iops']:>9.0f} {r['mibs']:>8.1f} {r['p50']:>8.0f} {r['p99']:>8.0f} "
                      f"{rss} {ratio:>9.2f}")
                tsv_rows.append(f"{sec.name}\t{label}\t{r['iops']:.0f}\t{r['mibs']:.1f}\t{r['p50']:.0f}\t"
                                f"{r['p99']:.0f}\t{r['peak_rss']:.0f}\t{r['rss_growth']:.0f}\t{ratio:.3f}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tsv = finish(skipped, os.path.join(a.out, "compare_bench.tsv"), tsv_rows, started)
    if shutil.which("gnuplot"):
        png = os.path.join(a.out, "compare_bench.png")
        script = f"""set terminal pngcairo size 1600,700 noenhanced
set bmargin 14
set output "{png}"
set title "untorn IOPS / target IOPS (1.0 = equal)"
set style data histograms
set style fill solid 0.8
set xtics rotate by -50 font ",8"
set datafile separator "\\t"
set yrange [0:*]
plot "< awk -F'\\t' 'NR > 1 && $2 !~ /^untorn$/' {tsv}" using 9:xticlabels(sprintf("%s %s", stringcolumn(1), stringcolumn(2))) title "" lc rgb "#4477aa"
"""
        r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
        print(f"chart: {png}" if r.returncode == 0 else f"chart failed: {r.stderr.strip()}")
    else:
        print("chart skipped: gnuplot is missing (scripts/deps.sh bench installs gnuplot-nox)")


if __name__ == "__main__":
    main()
