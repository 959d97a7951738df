// libFuzzer target for the YAML loader and the command line's `section.key=value` keys.
//
// Input: YAML text, then optionally a line "%%" and one key=value per line (nbdkit's
// parameters). Whatever the input, load() must either give a Config or throw ConfigError
// (whose message names a key or a place); any other exception, crash or sanitizer report is
// a finding. A Config that loads must load again, unchanged, from its own effective values
// given as command-line keys (the loader's printer and parser agree).
// Every finding becomes a unit test in tests/unit/config_loader_test.cc.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "conf/config_loader.h"
#include "util/log.h"

using untorn::conf::ConfigError;
using untorn::conf::ConfigLoader;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = (untorn::set_log_sink([](untorn::LogLevel, std::string_view) {}), true);
  (void)quiet;
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string yaml = input, keys;
  if (const size_t sep = input.find("\n%%\n"); sep != std::string::npos) {
    yaml = input.substr(0, sep);
    keys = input.substr(sep + 4);
  }
  ConfigLoader loader;
  loader.set_text(yaml, "fuzz.yaml");
  size_t pos = 0;
  while (pos < keys.size()) {
    size_t end = keys.find('\n', pos);
    if (end == std::string::npos) end = keys.size();
    const std::string line = keys.substr(pos, end - pos);
    const size_t eq = line.find('=');
    loader.add_override(line.substr(0, eq), eq == std::string::npos ? "" : line.substr(eq + 1));
    pos = end + 1;
  }
  untorn::Config config;
  try {
    config = loader.load();
  } catch (const ConfigError& e) {
    if (std::string(e.what()).empty()) std::abort();  // an error must say something
    return 0;
  }
  // Round trip: the effective values, given back as keys, load to the same values.
  ConfigLoader again;
  for (const auto& [key, value] : ConfigLoader::effective_values(config)) again.add_override(key, value);
  untorn::Config reloaded;
  try {
    reloaded = again.load();
  } catch (const ConfigError&) {
    std::abort();  // the loader refused what it printed itself
  }
  if (ConfigLoader::effective_values(reloaded) != ConfigLoader::effective_values(config)) std::abort();
  return 0;
}
