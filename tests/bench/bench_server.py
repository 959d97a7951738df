"""tests/bench/bench_server.py — one NBD server under test on a unix socket, for the
benchmark drivers (compare_bench.py, extents_bench.py): started, ready, measured (idle and
peak RSS), stopped and reaped."""
import signal
import socket
import subprocess
import time


def proc_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """One server on a unix socket; stop() terminates and reaps it."""

    def __init__(self, name, argv, sock, log, ready_line):
        self.name, self.sock, self.log = name, sock, log
        self.log_file = open(log, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE if ready_line else subprocess.DEVNULL,
                                     stderr=self.log_file, text=True)
        if ready_line:  # untorn-listen prints the bound address once listening
            if not self.proc.stdout.readline():
                self.proc.wait()
                raise RuntimeError(f"{name} did not start: {open(log).read()}")
        else:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(sock)
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"{name} did not start: {open(log).read()}")
                    time.sleep(0.05)  # readiness poll of a third-party server, not a test
        self.uri = f"nbd+unix:///disk?socket={sock}"
        # Idle: after one client came and went (untorn-listen execs nbdkit, which loads
        # the plugin, only once it is listening).
        subprocess.run(["nbdinfo", "--size", self.uri], capture_output=True, check=False)
        self.idle_rss_kib = proc_kib(self.proc.pid, "VmRSS")

    def peak_rss_kib(self):
        return proc_kib(self.proc.pid, "VmHWM")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log_file.close()
