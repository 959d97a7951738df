// untorn-config — check an untorn configuration and print what follows from it.
//
// Reads the config exactly as the plugin does (same loader, same arguments: a YAML file
// as `config=FILE` or bare, plus section.key=value overrides), so scripts never repeat a
// value the config already holds.
//
// usage: untorn-config [--get KEY | --qemu-nvme-args NODE] [config=]FILE [key=value...]
//   (no option)          validate, print the effective settings as key=value lines
//   --get KEY            print one effective value (e.g. device.atomic_write_unit_max)
//   --qemu-nvme-args N   print QEMU -device options for an emulated NVMe namespace on
//                        block node N whose atomic limits match L and A
// Exit status: 0 when the config is valid, 1 with the loader's message when not.
#include <cstdio>
#include <string>

#include "conf/config_loader.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: untorn-config [--get KEY | --qemu-nvme-args NODE] [config=]FILE "
               "[key=value...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string get, qemu_node;
  untorn::conf::ConfigLoader loader;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--get" && i + 1 < argc) get = argv[++i];
    else if (arg == "--qemu-nvme-args" && i + 1 < argc) qemu_node = argv[++i];
    else if (arg.rfind("--", 0) == 0) return usage();
    else if (auto eq = arg.find('='); eq == std::string::npos) loader.set_file(arg);
    else if (arg.substr(0, eq) == "config") loader.set_file(arg.substr(eq + 1));
    else loader.add_override(arg.substr(0, eq), arg.substr(eq + 1));
  }
  untorn::Config config;
  try {
    config = loader.load();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "untorn-config: %s\n", e.what());
    return 1;
  }
  if (!qemu_node.empty()) {
    // NVMe counts atomic units in logical blocks, 0-based: AWUN = AWUPF = A/L - 1. QEMU
    // zeroes AWUPF when it exceeds AWUN, so both are set.
    const unsigned L = config.device.logical_block_size;
    const unsigned units = config.device.atomic_write_unit_max / L - 1;
    std::printf("-device nvme,id=nvme0,serial=untorn,atomic.dn=off,atomic.awun=%u,atomic.awupf=%u "
                "-device nvme-ns,drive=%s,bus=nvme0,nsid=1,logical_block_size=%u,physical_block_size=%u\n",
                units, units, qemu_node.c_str(), L, L);
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
