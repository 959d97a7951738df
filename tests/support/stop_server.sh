# tests/support/stop_server.sh — sourced by the shell tests: stop_within PID WHAT.
# SIGTERM, then wait for the process to exit (a deadline of 10 s, polled). The plain build
# requires a clean exit: a server still running at the deadline fails the test. Under a
# sanitizer preload (UNTORN_NBDKIT_PRELOAD), once gnutls was used, the process deadlocks
# at exit in libp11-kit's destructor (freelocale waiting on glibc's setlocale lock; seen
# with gdb, outside untorn's code): there it is killed with a note instead, and the plain
# build's run is the one that checks the clean exit.
running() {  # PID: alive and not a zombie waiting to be reaped
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
stop_within() {
  local pid=$1 what=$2 status=0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
  if running "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -z "${UNTORN_NBDKIT_PRELOAD:-}" ]; then
      echo "FAIL: $what did not exit within 10 s of SIGTERM" >&2
      return 1
    fi
    echo "note: $what hung at exit under the sanitizer preload (libp11-kit's destructor); killed"
    return 0
  fi
  wait "$pid" 2>/dev/null || status=$?
  [ $status -eq 0 ] || [ $status -eq 143 ] || { echo "FAIL: $what exited with status $status" >&2; return 1; }
}
