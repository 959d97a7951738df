// untorn-config — check an untorn configuration and print what follows from it.
//
// Reads the config exactly as the plugin does (same loader, same arguments: a YAML file
// as `config=FILE` or bare, plus section.key=value overrides), so scripts never repeat a
// value the config already holds. --help says how; --man-parameters prints the
// PARAMETERS section of nbdkit-untorn-plugin(1) from the loader's key table (the build
// uses it, so the man page cannot drift from the keys the plugin accepts).
// Exit status: 0 when the config is valid, 1 with the loader's message when not, 2 for
// bad usage.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "conf/config_loader.h"
#include "tools/qemu_probe.h"

namespace {

constexpr const char* kUsage =
    "usage: untorn-config [OPTION] [config=]FILE.yaml [section.key=value...]\n"
    "       untorn-config --man-parameters\n"
    "\n"
    "Validates an untorn configuration exactly as the nbdkit plugin does and prints what\n"
    "follows from it. Without an option: the effective settings, one key=value a line.\n"
    "\n"
    "Options:\n"
    "  --get KEY              print one effective value (e.g. device.atomic_write_unit_max)\n"
    "  --qemu-nvme-args NODE  print QEMU -device options for an emulated NVMe controller and\n"
    "                         namespace on block node NODE whose atomic limits match L and A\n"
    "    --id ID              the controller's id (default nvme0; one per untorn disk)\n"
    "    --nsid N             the namespace id (default 1)\n"
    "    --qemu BINARY        the QEMU these options are for (default qemu-system-x86_64);\n"
    "                         asked for its nvme-ns properties: where it has per-namespace\n"
    "                         atomic limits (QEMU 11) they are printed too. Linux 6.x guests\n"
    "                         read the controller's AWUPF, Linux 7.x guests only the\n"
    "                         namespace's NAWUPF\n"
    "    --ns-atomic on|off   do not ask QEMU: on prints the per-namespace options (QEMU 11\n"
    "                         and later), off only the controller-level ones (QEMU 10)\n"
    "  --qemu-blockdev NODE ADDRESS\n"
    "                         print the QEMU -blockdev for an untorn export at ADDRESS (a\n"
    "                         unix socket path, or HOST:PORT), with reconnect-delay so the\n"
    "                         guest waits through a server restart instead of failing I/O\n"
    "    --reconnect-delay S  seconds QEMU holds requests while it reconnects (default 30)\n"
    "    --tls-creds ID       add tls-creds=ID (a QEMU -object tls-creds-psk/x509 id)\n"
    "    --read-only          add read-only=on (for a read-only export, nbdkit -r)\n"
    "  --man-parameters       print the man page's PARAMETERS section (roff)\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit status: 0 valid, 1 invalid (the message names the key and where it came from),\n"
    "2 bad usage. See nbdkit-untorn-plugin(1).\n";

int usage_error(const std::string& problem) {
  std::fprintf(stderr, "untorn-config: %s\n(untorn-config --help for usage)\n", problem.c_str());
  return 2;
}

// roff-escapes a help line: backslashes, and a leading dot or quote.
std::string roff(std::string text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out = "\\&" + out;
  return out;
}

void print_man_parameters() {
  std::printf(".SH PARAMETERS\n"
              "Parameters are given on the nbdkit command line after the plugin name, or as\n"
              "keys of the YAML file named by\n.BR config= ;\n"
              "a command-line key overrides the file. Sizes take K, M and G suffixes\n"
              "(powers of 1024); durations take ms, s and m.\n");
  std::printf(".TP\n.BR config= FILE.yaml\nYAML configuration file: sections \\fBbacking\\fR, "
              "\\fBdevice\\fR, \\fBcache\\fR, \\fBjournal\\fR, \\fBstats\\fR, each a mapping of "
              "keys. A bare file name as the first parameter means the same.\n");
  for (const auto& [key, help] : untorn::conf::ConfigLoader::key_help()) {
    std::printf(".TP\n.BR %s= VALUE\n%s.\n", roff(key).c_str(), roff(help).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string get, qemu_node, blockdev_node, blockdev_address, controller = "nvme0", tls_creds;
  std::string qemu = "qemu-system-x86_64", ns_atomic;  // ns_atomic: "", "on" or "off"
  unsigned nsid = 1, reconnect_delay = 30;
  bool want_blockdev = false, read_only = false;
  untorn::conf::ConfigLoader loader;
  bool have_config = false;
  auto number = [](const char* text, unsigned& out) {
    char* end = nullptr;
    unsigned long v = std::strtoul(text, &end, 10);
    if (!*text || *end || v == 0 || v > 0xffffffffUL) return false;
    out = static_cast<unsigned>(v);
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--man-parameters") {
      print_man_parameters();
      return 0;
    } else if (arg == "--get" && has_value) {
      get = argv[++i];
    } else if (arg == "--qemu-nvme-args" && has_value) {
      qemu_node = argv[++i];
    } else if (arg == "--qemu" && has_value) {
      qemu = argv[++i];
    } else if (arg == "--ns-atomic" && has_value) {
      ns_atomic = argv[++i];
      if (ns_atomic != "on" && ns_atomic != "off") return usage_error("--ns-atomic wants on or off");
    } else if (arg == "--id" && has_value) {
      controller = argv[++i];
    } else if (arg == "--nsid" && has_value) {
      if (!number(argv[++i], nsid)) return usage_error("--nsid wants a namespace id from 1");
    } else if (arg == "--qemu-blockdev" && i + 2 < argc) {
      want_blockdev = true;
      blockdev_node = argv[++i];
      blockdev_address = argv[++i];
    } else if (arg == "--reconnect-delay" && has_value) {
      if (!number(argv[++i], reconnect_delay)) return usage_error("--reconnect-delay wants seconds from 1");
    } else if (arg == "--read-only") {
      read_only = true;
    } else if (arg == "--tls-creds" && has_value) {
      tls_creds = argv[++i];
    } else if (arg.rfind("-", 0) == 0) {
      return usage_error("unknown option or missing value: " + arg);
    } else if (auto eq = arg.find('='); eq == std::string::npos) {
      loader.set_file(arg);
      have_config = true;
    } else if (arg.substr(0, eq) == "config") {
      loader.set_file(arg.substr(eq + 1));
      have_config = true;
    } else {
      loader.add_override(arg.substr(0, eq), arg.substr(eq + 1));
      have_config = true;
    }
  }
  if (want_blockdev) {
    // Needs no config: the address is where the server listens.
    std::string server;
    const auto colon = blockdev_address.rfind(':');
    if (blockdev_address.find('/') != std::string::npos || colon == std::string::npos)
      server = "server.type=unix,server.path=" + blockdev_address;
    else {
      std::string host = blockdev_address.substr(0, colon);  // [::1] -> ::1
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      server = "server.type=inet,server.host=" + host + ",server.port=" + blockdev_address.substr(colon + 1);
    }
    const std::string tls = tls_creds.empty() ? "" : "tls-creds=" + tls_creds + ",";
    std::printf("-blockdev driver=nbd,node-name=%s,%s,%sreconnect-delay=%u,cache.direct=on,%s\n",
                blockdev_node.c_str(), server.c_str(), tls.c_str(), reconnect_delay,
                read_only ? "read-only=on" : "discard=unmap");
    return 0;
  }
  if (!have_config) return usage_error("no configuration given");
  untorn::Config config;
  try {
    config = loader.load();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "untorn-config: %s\n", e.what());
    return 1;
  }
  if (!qemu_node.empty()) {
    // NVMe counts atomic units in logical blocks, 0-based: AWUN = AWUPF = A/L - 1. QEMU
    // zeroes AWUPF when it exceeds AWUN, so both are set; the same for NAWUN/NAWUPF.
    const unsigned L = config.device.logical_block_size;
    const unsigned units = config.device.atomic_write_unit_max / L - 1;
    const std::string serial = ("untorn-" + controller).substr(0, 20);  // NVMe: 20 bytes
    bool per_namespace = ns_atomic == "on";
    if (ns_atomic.empty()) {
      const auto probe = untorn::tools::probe_nvme_namespace(qemu);
      per_namespace = probe.per_namespace_atomic;
      if (!probe.ran)
        std::fprintf(stderr,
                     "untorn-config: warning: %s; printing the controller-level atomic options "
                     "only (QEMU 10). Linux 7.x guests would see one logical block as the atomic "
                     "unit: give --qemu BINARY, or --ns-atomic on for QEMU 11 and later\n",
                     probe.error.c_str());
      else if (!per_namespace)
        std::fprintf(stderr,
                     "untorn-config: note: %s has no per-namespace atomic limits (nvme-ns "
                     "atomic.nawupf, QEMU 11): Linux 6.x guests see %u-byte atomic writes, "
                     "Linux 7.x guests only %u bytes\n",
                     qemu.c_str(), config.device.atomic_write_unit_max, L);
    }
    std::string ns_options;
    if (per_namespace)
      ns_options = ",atomic.nawun=" + std::to_string(units) + ",atomic.nawupf=" + std::to_string(units);
    std::printf("-device nvme,id=%s,serial=%s,atomic.dn=off,atomic.awun=%u,atomic.awupf=%u "
                "-device nvme-ns,drive=%s,bus=%s,nsid=%u,logical_block_size=%u,physical_block_size=%u%s\n",
                controller.c_str(), serial.c_str(), units, units, qemu_node.c_str(),
                controller.c_str(), nsid, L, L, ns_options.c_str());
    return 0;
  }
  const auto values = untorn::conf::ConfigLoader::effective_values(config);
  if (!get.empty()) {
    for (const auto& [k, v] : values)
      if (k == get) {
        std::printf("%s\n", v.c_str());
        return 0;
      }
    std::fprintf(stderr, "untorn-config: unknown key '%s'\n", get.c_str());
    return 2;
  }
  for (const auto& [k, v] : values) std::printf("%s=%s\n", k.c_str(), v.c_str());
  return 0;
}
