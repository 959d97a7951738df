// untorn-listen — open listening sockets, then exec nbdkit with them (socket activation).
//
// nbdkit serves either a unix socket or TCP, not both; with systemd-style socket
// activation (LISTEN_PID/LISTEN_FDS) it serves every socket it is handed. This tool binds
// them, prints where it listens (one line each: "unix PATH" / "tcp HOST:PORT"; port 0
// picks a free port, printed as bound), and becomes nbdkit (exec keeps the pid, as
// LISTEN_PID requires).
//
// usage: untorn-listen [--unix PATH]... [--tcp HOST:PORT]... [--ready-file FILE] -- nbdkit ARGS...
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "untorn-listen: %s\n", message.c_str());
  std::exit(1);
}

constexpr const char* kHelp =
    "usage: untorn-listen [--unix PATH]... [--tcp HOST:PORT]... [--ready-file FILE] -- nbdkit ARGS...\n"
    "\n"
    "Binds every socket given (a unix socket PATH, replacing a stale one; TCP HOST:PORT,\n"
    "port 0 picks a free one), then becomes nbdkit with them handed over by socket\n"
    "activation (LISTEN_FDS), so one nbdkit serves unix and TCP at once. Prints where it\n"
    "listens, one line each (\"unix PATH\", \"tcp HOST:PORT\"), on stdout or into FILE.\n"
    "nbdkit must not be given -U, -p, -i or -s then. See nbdkit-untorn-plugin(1).\n";

[[noreturn]] void usage() {
  std::fputs(kHelp, stderr);
  std::exit(2);
}

int listen_unix(const std::string& path, std::string& printed) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) die("unix socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) die(path + " exists and is not a socket; not replacing it");
    // A stale socket from a server that died: replace it only if nobody answers.
    int probe = socket(AF_UNIX, SOCK_STREAM, 0);
    bool alive = connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(probe);
    if (alive) die(path + " is in use by a running server");
    unlink(path.c_str());
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    die("bind " + path + ": " + std::strerror(errno));
  if (listen(fd, SOMAXCONN) != 0) die("listen " + path + ": " + std::strerror(errno));
  printed = "unix " + path;
  return fd;
}

int listen_tcp(const std::string& spec, std::string& printed) {
  auto colon = spec.rfind(':');
  if (colon == std::string::npos) die("--tcp wants HOST:PORT, got " + spec);
  std::string host = spec.substr(0, colon), port = spec.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int r = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); r != 0)
    die("--tcp " + spec + ": " + gai_strerror(r));
  int fd = socket(res->ai_family, SOCK_STREAM, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0)
    die("bind " + spec + ": " + std::strerror(errno));
  freeaddrinfo(res);
  if (listen(fd, SOMAXCONN) != 0) die("listen " + spec + ": " + std::strerror(errno));
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  char name[INET6_ADDRSTRLEN] = "?";
  unsigned bound_port = 0;
  if (bound.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&bound);
    inet_ntop(AF_INET, &in->sin_addr, name, sizeof name);
    bound_port = ntohs(in->sin_port);
    printed = "tcp " + std::string(name) + ":" + std::to_string(bound_port);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&bound);
    inet_ntop(AF_INET6, &in6->sin6_addr, name, sizeof name);
    bound_port = ntohs(in6->sin6_port);
    printed = "tcp [" + std::string(name) + "]:" + std::to_string(bound_port);
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> fds;
  std::vector<std::string> lines;
  std::string ready_file;
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "-h" || arg == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if (i + 1 >= argc) usage();
    std::string printed;
    if (arg == "--unix") fds.push_back(listen_unix(argv[++i], printed));
    else if (arg == "--tcp") fds.push_back(listen_tcp(argv[++i], printed));
    else if (arg == "--ready-file") { ready_file = argv[++i]; continue; }
    else usage();
    lines.push_back(printed);
  }
  if (i >= argc || fds.empty()) usage();

  // Socket activation hands the sockets over as fds 3, 4, ...; move them out of the way
  // first so dup2 never overwrites one still to be moved.
  std::vector<int> high;
  for (int fd : fds) {
    int h = fcntl(fd, F_DUPFD, 100);
    if (h < 0) die(std::string("fcntl: ") + std::strerror(errno));
    close(fd);
    high.push_back(h);
  }
  for (size_t k = 0; k < high.size(); ++k) {
    int target = 3 + static_cast<int>(k);
    if (dup2(high[k], target) < 0) die(std::string("dup2: ") + std::strerror(errno));
    close(high[k]);
    fcntl(target, F_SETFD, 0);  // keep across exec
  }

  std::string text;
  for (const auto& l : lines) text += l + "\n";
  if (!ready_file.empty()) {
    std::string tmp = ready_file + ".tmp";
    std::ofstream(tmp) << text;
    if (rename(tmp.c_str(), ready_file.c_str()) != 0)
      die("cannot write " + ready_file + ": " + std::strerror(errno));
  } else {
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
  }

  setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", std::to_string(fds.size()).c_str(), 1);
  execvp(argv[i], argv + i);
  die(std::string("cannot run ") + argv[i] + ": " + std::strerror(errno));
}
