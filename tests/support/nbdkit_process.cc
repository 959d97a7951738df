#include "tests/support/nbdkit_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace untorn::testing {

std::string plugin_path() {
  const char* p = std::getenv("UNTORN_PLUGIN");
  if (!p || !*p) throw std::runtime_error("UNTORN_PLUGIN is not set (run the tests with meson test)");
  return p;
}

NbdkitProcess::NbdkitProcess(std::string dir, std::vector<std::string> args)
    : dir_(std::move(dir)), args_(std::move(args)) {
  socket_ = dir_ + "/nbd.sock";
  log_ = dir_ + "/nbdkit.log";
}

NbdkitProcess::~NbdkitProcess() { stop(); }

void NbdkitProcess::start() {
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) throw std::runtime_error("socket failed");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long");
  std::strcpy(addr.sun_path, socket_.c_str());
  unlink(socket_.c_str());
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listener, 64) != 0)
    throw std::runtime_error("bind/listen " + socket_ + ": " + std::strerror(errno));

  // Everything the child needs is built before fork: only async-signal-safe calls after.
  std::vector<std::string> argv_s = {"nbdkit", "-f", "--exit-with-parent"};
  if (const char* v = std::getenv("UNTORN_NBDKIT_VERBOSE"); v && *v == '1') argv_s.push_back("-v");
  for (const auto& a : args_)  // nbdkit's own options go before the plugin
    if (a.starts_with("-")) argv_s.push_back(a);
  argv_s.push_back(plugin_path());
  for (const auto& a : args_)
    if (!a.starts_with("-")) argv_s.push_back(a);
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (kv.starts_with("LISTEN_") || kv.starts_with("LD_PRELOAD=")) continue;
    env_s.emplace_back(kv);
  }
  if (const char* pre = std::getenv("UNTORN_NBDKIT_PRELOAD"); pre && *pre)
    env_s.push_back(std::string("LD_PRELOAD=") + pre);
  // UNTORN_NBDKIT_ENV: space-separated NAME=VALUE pairs for nbdkit only (set by meson
  // for sanitizer builds); they override the inherited ones.
  if (const char* extra = std::getenv("UNTORN_NBDKIT_ENV"); extra && *extra) {
    std::istringstream words(extra);
    for (std::string kv; words >> kv;) {
      std::string name = kv.substr(0, kv.find('=') + 1);
      std::erase_if(env_s, [&](const std::string& e) { return e.starts_with(name); });
      env_s.push_back(kv);
    }
  }
  env_s.push_back("LISTEN_FDS=1");
  env_s.push_back("LISTEN_PID=0000000000");  // digits filled in by the child
  std::vector<char*> envp;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);
  char* listen_pid = env_s.back().data() + std::strlen("LISTEN_PID=");

  int logfd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (logfd < 0) throw std::runtime_error("cannot create " + log_);

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // Child: the listening socket becomes fd 3, stderr goes to the log.
    unsigned long p = static_cast<unsigned long>(getpid());
    char digits[16];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + p % 10);
      p /= 10;
    } while (p);
    for (int k = 0; k < n; ++k) listen_pid[k] = digits[n - 1 - k];
    listen_pid[n] = '\0';
    // stderr first: the log may sit on fd 3. dup2 onto itself keeps FD_CLOEXEC, so
    // clear it explicitly when the listener already is fd 3.
    if (dup2(logfd, 2) < 0 || dup2(logfd, 1) < 0) _exit(126);
    if (listener == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(listener, 3) < 0) _exit(126);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execvpe("nbdkit", argv.data(), envp.data());
    _exit(127);
  }
  close(logfd);
  close(listener);
}

int NbdkitProcess::wait_exit() {
  int status = 0;
  if (pid_ > 0) {
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  return status;
}

void NbdkitProcess::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait_exit();
}

int NbdkitProcess::stop() {
  if (pid_ <= 0) return 0;
  ::kill(pid_, SIGTERM);
  return wait_exit();
}

std::string NbdkitProcess::stderr_text() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

NbdHandle connect_nbd(const std::string& uri, ConnectOptions options) {
  NbdHandle h(nbd_create());
  if (!h) throw std::runtime_error(std::string("nbd_create: ") + nbd_get_error());
  uint32_t strict = static_cast<uint32_t>(nbd_get_strict_mode(h.get()));
  if (!options.client_checks) strict = 0;
  if (options.allow_unaligned) strict &= ~static_cast<uint32_t>(LIBNBD_STRICT_ALIGN);
  nbd_set_strict_mode(h.get(), strict);
  if (options.base_allocation) nbd_add_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION);
  if (nbd_connect_uri(h.get(), uri.c_str()) != 0)
    throw std::runtime_error(std::string("nbd_connect_uri: ") + nbd_get_error());
  return h;
}

}  // namespace untorn::testing
