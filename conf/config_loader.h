// conf/config_loader.h — builds a validated Config from a YAML file plus command-line keys.
//
// Owns: the YAML file name and the ordered list of `section.key=value` overrides it was
// given. load() is strict: an unknown section or key, a value of the wrong type, a
// duplicate key or a rule broken between keys throws ConfigError whose message names the
// key and where it came from ("disk.yaml line 4", "command line" or "default").
// Precedence: defaults < YAML file < command-line keys (later ones win), whatever the
// order in which they were given. Relative paths in the file are resolved against the
// file's directory; relative paths on the command line against the working directory at
// the time load() runs (nbdkit calls it before it changes directory).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "conf/config.h"

namespace untorn::conf {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConfigLoader {
 public:
  // The YAML file to read; relative to the working directory.
  void set_file(std::string path) { file_ = std::move(path); }
  const std::string& file() const { return file_; }

  // A `section.key=value` pair from the command line.
  void add_override(std::string key, std::string value) {
    overrides_.emplace_back(std::move(key), std::move(value));
  }

  // YAML text given directly (tests); `name` stands in for the file name in messages and
  // relative paths resolve against the working directory.
  void set_text(std::string text, std::string name) {
    text_ = std::move(text);
    text_name_ = std::move(name);
  }

  Config load() const;

  // Every key, with a one-line description, for nbdkit's --help.
  static std::string help_text();
  // Every key and its description, in table order (the man page's PARAMETERS).
  static std::vector<std::pair<std::string, std::string>> key_help();
  static bool is_known_key(std::string_view key);
  // Every key with its value in `config`, in table order, spelled as the loader accepts it.
  static std::vector<std::pair<std::string, std::string>> effective_values(const Config& config);

 private:
  std::string file_;
  std::string text_;
  std::string text_name_;
  std::vector<std::pair<std::string, std::string>> overrides_;
};

}  // namespace untorn::conf
