#include "plugin/nbdkit_argv.h"

#include <array>
#include <fstream>
#include <iterator>
#include <string_view>

namespace untorn {
namespace {

struct LongOption {
  std::string_view name;
  bool has_arg;
  bool readonly;
};

// nbdkit's long options (server/options.h), 1.32 and later.
constexpr std::array kLongOptions = {
    LongOption{"debug", true, false},         LongOption{"dump-config", false, false},
    LongOption{"dump-plugin", false, false},  LongOption{"exit-with-parent", false, false},
    LongOption{"export", true, false},        LongOption{"export-name", true, false},
    LongOption{"exportname", true, false},    LongOption{"filter", true, false},
    LongOption{"foreground", false, false},   LongOption{"no-fork", false, false},
    LongOption{"group", true, false},         LongOption{"help", false, false},
    LongOption{"ip-addr", true, false},       LongOption{"ipaddr", true, false},
    LongOption{"ipv4-only", false, false},    LongOption{"ipv6-only", false, false},
    LongOption{"keepalive", false, false},    LongOption{"log", true, false},
    LongOption{"long-options", false, false}, LongOption{"mask-handshake", true, false},
    LongOption{"name", true, false},          LongOption{"new-style", false, false},
    LongOption{"newstyle", false, false},     LongOption{"no-mc", false, false},
    LongOption{"no-meta-contexts", false, false}, LongOption{"no-sr", false, false},
    LongOption{"old-style", false, false},    LongOption{"oldstyle", false, false},
    LongOption{"pid-file", true, false},      LongOption{"pidfile", true, false},
    LongOption{"port", true, false},          LongOption{"print-uri", false, false},
    LongOption{"read-only", false, true},     LongOption{"readonly", false, true},
    LongOption{"run", true, false},           LongOption{"selinux-label", true, false},
    LongOption{"short-options", false, false}, LongOption{"single", false, false},
    LongOption{"stdin", false, false},        LongOption{"swap", false, false},
    LongOption{"threads", true, false},       LongOption{"timeout", true, false},
    LongOption{"tls", true, false},           LongOption{"tls-certificates", true, false},
    LongOption{"tls-priority", true, false},  LongOption{"tls-psk", true, false},
    LongOption{"tls-verify-peer", false, false}, LongOption{"unix", true, false},
    LongOption{"user", true, false},          LongOption{"verbose", false, false},
    LongOption{"version", false, false},      LongOption{"vsock", false, false},
};

// Short options that take an argument: "46D:e:fg:i:nop:P:rst:u:U:vV".
constexpr std::string_view kShortWithArg = "DegipPtuU";

// getopt_long's lookup: an exact name, else the options the prefix starts, if they all
// mean the same (glibc accepts --read for --read-only/--readonly, both -r); else nullptr
// (nbdkit exits on an ambiguous option anyway).
const LongOption* find_long(std::string_view name) {
  const LongOption* match = nullptr;
  for (const LongOption& o : kLongOptions) {
    if (o.name == name) return &o;
    if (!o.name.starts_with(name)) continue;
    if (match && (match->has_arg != o.has_arg || match->readonly != o.readonly)) return nullptr;
    match = &o;
  }
  return match;
}

}  // namespace

bool nbdkit_args_say_readonly(const std::vector<std::string>& argv) {
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string_view a = argv[i];
    if (a == "--") break;
    if (a.starts_with("--")) {
      const auto eq = a.find('=');
      const LongOption* o = find_long(a.substr(2, eq == std::string_view::npos ? a.npos : eq - 2));
      if (!o) continue;
      if (o->readonly) return true;
      if (o->has_arg && eq == std::string_view::npos) ++i;
      continue;
    }
    if (a.size() < 2 || a[0] != '-') continue;  // the plugin, key=value, or "-"
    for (size_t k = 1; k < a.size(); ++k) {
      if (a[k] == 'r') return true;
      if (kShortWithArg.find(a[k]) != std::string_view::npos) {
        if (k + 1 == a.size()) ++i;  // the argument is the next word
        break;                       // else the rest of this word is the argument
      }
    }
  }
  return false;
}

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    argv.emplace_back(all.substr(start, end - start));
    start = end + 1;
  }
  return argv;
}

}  // namespace untorn
