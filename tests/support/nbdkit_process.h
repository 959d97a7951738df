// tests/support/nbdkit_process.h — nbdkit running the untorn plugin, for one test.
//
// Owns: the nbdkit child process and the listening unix socket it serves. The socket is
// bound and listening before nbdkit starts (handed over by socket activation), so a client
// may connect as soon as start() returns, with no polling. The child gets
// --exit-with-parent, and the destructor stops (SIGTERM) and reaps it. stderr goes to a
// file the test can read (errors from config_complete, for instance).
// Environment: UNTORN_PLUGIN (path of the plugin .so, set by meson), optional
// UNTORN_NBDKIT_PRELOAD (sanitizer runtime to LD_PRELOAD into nbdkit).
#pragma once

#include <libnbd.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace untorn::testing {

class NbdkitProcess {
 public:
  // `args` are the plugin's key=value parameters, and nbdkit options (those starting with
  // "-", such as "-D", "untorn.stats=1" as one "-Duntorn.stats=1"); `dir` holds the socket
  // and the log.
  NbdkitProcess(std::string dir, std::vector<std::string> args);
  ~NbdkitProcess();
  NbdkitProcess(const NbdkitProcess&) = delete;
  NbdkitProcess& operator=(const NbdkitProcess&) = delete;

  void start();
  // Waits for nbdkit to exit by itself; returns its exit status (as from waitpid), so
  // tests can see a refused configuration.
  int wait_exit();
  // SIGKILL, then reap: the crash of the server process.
  void kill_hard();
  // SIGTERM, then reap; returns the wait status (0 when nbdkit was not running).
  int stop();
  bool running() const { return pid_ > 0; }

  const std::string& socket_path() const { return socket_; }
  std::string uri() const { return "nbd+unix:///?socket=" + socket_; }
  std::string stderr_text() const;
  pid_t pid() const { return pid_; }

 private:
  std::string dir_;
  std::vector<std::string> args_;
  std::string socket_;
  std::string log_;
  pid_t pid_ = -1;
};

// An open libnbd connection; closes on destruction.
struct NbdHandleCloser {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};
using NbdHandle = std::unique_ptr<nbd_handle, NbdHandleCloser>;

struct ConnectOptions {
  bool client_checks = true;   // libnbd refuses out-of-range requests itself when true
  bool allow_unaligned = true; // send requests below the advertised minimum block size
  bool base_allocation = true; // negotiate base:allocation for block status
};

// Connects to `uri`, throwing std::runtime_error with libnbd's message on failure.
NbdHandle connect_nbd(const std::string& uri, ConnectOptions options = {});

std::string plugin_path();

}  // namespace untorn::testing
