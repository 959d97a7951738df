#include "conf/config_loader.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "conf/units.h"

namespace untorn::conf {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = uint64_t{1} << 20;

// Where a value came from, for messages: "disk.yaml line 4", "command line", "default".
using Origin = std::string;

// Thrown by a setter when the text is not a value of the key's type; carries what was
// expected. The loader adds the key and the origin.
struct BadValue {
  std::string expected;
};

struct KeySpec {
  std::string_view name;
  std::string_view help;
  // Parses `text` into `config`; relative paths are resolved against `base`.
  std::function<void(Config&, const std::string& text, const fs::path& base)> set;
  // The key's value in `config`, in a form `set` accepts.
  std::function<std::string(const Config&)> show;
};

std::string show_bool(bool v) { return v ? "true" : "false"; }

uint64_t want_size(const std::string& text) {
  if (auto v = parse_size(text)) return *v;
  throw BadValue{"a size such as 4096, 64K or 1G"};
}

uint64_t want_uint(const std::string& text, uint64_t max) {
  auto v = parse_uint(text);
  if (!v || *v > max) throw BadValue{"a whole number from 0 to " + std::to_string(max)};
  return *v;
}

std::chrono::milliseconds want_duration(const std::string& text) {
  if (auto v = parse_duration(text)) return *v;
  throw BadValue{"a duration such as 5s, 500ms or 1m"};
}

bool want_bool(const std::string& text) {
  if (auto v = parse_bool(text)) return *v;
  throw BadValue{"true or false"};
}

std::string want_path(const std::string& text, const fs::path& base) {
  if (text.empty()) throw BadValue{"a file path"};
  fs::path p(text);
  if (p.is_relative()) p = base / p;
  p = p.lexically_normal();
  // "dir/", "dir/.", "..", "//" end in no file name once normalised: a directory, never a
  // file (and "//" + ".journal" would print as another path; found by the config fuzzer).
  if (!p.has_filename()) throw BadValue{"a file path, not a directory"};
  return p.string();
}

// "pool/image": RADOS pool and RBD image names, neither empty nor holding '/' or '@'
// (a snapshot is not served) or whitespace.
std::string want_rbd_image(const std::string& text) {
  const BadValue bad{"POOL/IMAGE, such as rbd/disk1 (no snapshot, no spaces)"};
  const size_t slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == text.size()) throw bad;
  if (text.find('/', slash + 1) != std::string::npos) throw bad;
  for (char ch : text)
    if (ch == '@' || static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) throw bad;
  return text;
}

// A Ceph client id: the part after "client.", letters, digits, '_', '-' and '.'.
std::string want_ceph_id(const std::string& text) {
  const BadValue bad{"a client id such as admin or untorn (without \"client.\")"};
  if (text.empty() || text.rfind("client.", 0) == 0) throw bad;
  for (char ch : text)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-' && ch != '.')
      throw bad;
  return text;
}

uint32_t want_u32_size(const std::string& text) {
  uint64_t v = want_size(text);
  if (v > UINT32_MAX) throw BadValue{"a size below 4G"};
  return static_cast<uint32_t>(v);
}

const std::vector<KeySpec>& key_specs() {
  static const std::vector<KeySpec> specs = {
      {"backing.path", "backing file (created sparse at backing.size if missing)",
       [](Config& c, const std::string& t, const fs::path& b) {
         c.backing.path = t.empty() ? std::string() : want_path(t, b);  // empty: unset (backing.rbd)
       },
       [](const Config& c) { return c.backing.path; }},
      {"backing.size", "size of the device (e.g. 8G); 0 or unset: the existing file's size",
       [](Config& c, const std::string& t, const fs::path&) { c.backing.size = want_size(t); },
       [](const Config& c) { return std::to_string(c.backing.size); }},
      {"backing.resize", "allow resizing an existing backing file to backing.size (default false)",
       [](Config& c, const std::string& t, const fs::path&) { c.backing.resize = want_bool(t); },
       [](const Config& c) { return show_bool(c.backing.resize); }},
      {"backing.direct_io", "open the backing file with O_DIRECT (default true)",
       [](Config& c, const std::string& t, const fs::path&) { c.backing.direct_io = want_bool(t); },
       [](const Config& c) { return show_bool(c.backing.direct_io); }},
      {"backing.rbd", "serve the RBD image POOL/IMAGE instead of a backing file",
       [](Config& c, const std::string& t, const fs::path&) {
         c.backing.rbd = t.empty() ? std::string() : want_rbd_image(t);  // empty: a file
       },
       [](const Config& c) { return c.backing.rbd; }},
      {"backing.ceph_conf", "with backing.rbd: the ceph.conf to read (default: librados' search)",
       [](Config& c, const std::string& t, const fs::path& b) {
         c.backing.ceph_conf = t.empty() ? std::string() : want_path(t, b);
       },
       [](const Config& c) { return c.backing.ceph_conf; }},
      {"backing.ceph_id", "with backing.rbd: the Ceph client id, without client. (default admin)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.backing.ceph_id = t.empty() ? std::string() : want_ceph_id(t);
       },
       [](const Config& c) { return c.backing.ceph_id; }},
      {"device.logical_block_size", "L: logical block size, power of two 512..64K (default 4K)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.device.logical_block_size = want_u32_size(t);
       },
       [](const Config& c) { return std::to_string(c.device.logical_block_size); }},
      {"device.atomic_write_unit_max", "A: atomic write unit max, power of two L..1M (default 64K)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.device.atomic_write_unit_max = want_u32_size(t);
       },
       [](const Config& c) { return std::to_string(c.device.atomic_write_unit_max); }},
      {"device.native_atomic_unit",
       "largest write the backing's storage never tears (default 0: probe it)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.device.native_atomic_unit = want_size(t);
       },
       [](const Config& c) { return std::to_string(c.device.native_atomic_unit); }},
      {"device.readonly",
       "serve read-only: no writes, no writeback, no recovery (nbdkit -r sets it; default false)",
       [](Config& c, const std::string& t, const fs::path&) { c.device.readonly = want_bool(t); },
       [](const Config& c) { return show_bool(c.device.readonly); }},
      {"cache.mode", "writeback | writethrough | uncached (default writeback)",
       [](Config& c, const std::string& t, const fs::path&) {
         if (t == "writeback") c.cache.mode = CacheMode::writeback;
         else if (t == "writethrough") c.cache.mode = CacheMode::writethrough;
         else if (t == "uncached") c.cache.mode = CacheMode::uncached;
         else throw BadValue{"one of writeback, writethrough, uncached"};
       },
       [](const Config& c) { return std::string(to_string(c.cache.mode)); }},
      {"cache.size", "memory budget of the cache (default 1G)",
       [](Config& c, const std::string& t, const fs::path&) { c.cache.size = want_size(t); },
       [](const Config& c) { return std::to_string(c.cache.size); }},
      {"cache.folio_max", "largest folio, power of two >= L (default 2M)",
       [](Config& c, const std::string& t, const fs::path&) { c.cache.folio_max = want_size(t); },
       [](const Config& c) { return std::to_string(c.cache.folio_max); }},
      {"cache.dirty_background_ratio", "percent of cache.size dirty that starts writeback (default 10)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.cache.dirty_background_ratio = static_cast<unsigned>(want_uint(t, 100));
       },
       [](const Config& c) { return std::to_string(c.cache.dirty_background_ratio); }},
      {"cache.dirty_ratio", "percent of cache.size dirty at which writers wait (default 40)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.cache.dirty_ratio = static_cast<unsigned>(want_uint(t, 100));
       },
       [](const Config& c) { return std::to_string(c.cache.dirty_ratio); }},
      {"cache.dirty_expire", "age at which dirty data is written back (default 5s)",
       [](Config& c, const std::string& t, const fs::path&) { c.cache.dirty_expire = want_duration(t); },
       [](const Config& c) { return std::to_string(c.cache.dirty_expire.count()) + "ms"; }},
      {"cache.populate_on_read", "keep data read from the backing file in the cache (default true)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.cache.populate_on_read = want_bool(t);
       },
       [](const Config& c) { return show_bool(c.cache.populate_on_read); }},
      {"journal.path", "journal file (default: backing.path + .journal)",
       [](Config& c, const std::string& t, const fs::path& b) {
         c.journal.path = t.empty() ? std::string() : want_path(t, b);  // empty: the default
       },
       [](const Config& c) { return c.journal.path; }},
      {"journal.mode", "auto | always | never (default auto)",
       [](Config& c, const std::string& t, const fs::path&) {
         if (t == "auto") c.journal.mode = JournalMode::automatic;
         else if (t == "always") c.journal.mode = JournalMode::always;
         else if (t == "never") c.journal.mode = JournalMode::never;
         else throw BadValue{"one of auto, always, never"};
       },
       [](const Config& c) { return std::string(to_string(c.journal.mode)); }},
      {"journal.checkpoint_size", "journal bytes after which it is checkpointed (default 64M)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.journal.checkpoint_size = want_size(t);
       },
       [](const Config& c) { return std::to_string(c.journal.checkpoint_size); }},
      {"stats.file", "append the cache's counters to this file, one JSON object a line (default: off)",
       [](Config& c, const std::string& t, const fs::path& b) {
         c.stats.file = t.empty() ? std::string() : want_path(t, b);  // empty: off
       },
       [](const Config& c) { return c.stats.file; }},
      {"stats.interval", "how often a stats line is written (default 10s; one more at exit)",
       [](Config& c, const std::string& t, const fs::path&) { c.stats.interval = want_duration(t); },
       [](const Config& c) { return std::to_string(c.stats.interval.count()) + "ms"; }},
      {"test.unsafe_allow_journal_never", "TEST ONLY: allow journal.mode=never where writes can tear",
       [](Config& c, const std::string& t, const fs::path&) {
         c.test.unsafe_allow_journal_never = want_bool(t);
       },
       [](const Config& c) { return show_bool(c.test.unsafe_allow_journal_never); }},
      {"test.unsafe_split_writes", "TEST ONLY: write in place in pieces of this size (tears writes)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.test.unsafe_split_writes = want_size(t);
       },
       [](const Config& c) { return std::to_string(c.test.unsafe_split_writes); }},
      {"test.kill_after_journal_commits",
       "TEST ONLY: the server kills itself (SIGKILL) after this many journal commits, before "
       "the committed writes go in place (0: never)",
       [](Config& c, const std::string& t, const fs::path&) {
         c.test.kill_after_journal_commits = want_uint(t, UINT64_MAX);
       },
       [](const Config& c) { return std::to_string(c.test.kill_after_journal_commits); }},
  };
  return specs;
}

const KeySpec* find_spec(std::string_view key) {
  for (const auto& s : key_specs())
    if (s.name == key) return &s;
  return nullptr;
}

std::string keys_of_section(std::string_view section) {
  std::string out;
  for (const auto& s : key_specs()) {
    std::string_view name = s.name;
    if (name.substr(0, name.find('.')) != section) continue;
    if (!out.empty()) out += ", ";
    out += name.substr(name.find('.') + 1);
  }
  return out;
}

std::string known_sections() {
  std::string out;
  std::set<std::string_view> seen;
  for (const auto& s : key_specs()) {
    std::string_view section = s.name.substr(0, s.name.find('.'));
    if (!seen.insert(section).second) continue;
    if (!out.empty()) out += ", ";
    out += section;
  }
  return out;
}

[[noreturn]] void fail(const Origin& origin, std::string_view key, const std::string& problem) {
  std::string msg = origin + ": ";
  if (!key.empty()) msg += std::string(key) + ": ";
  throw ConfigError(msg + problem);
}

std::string unknown_key_problem(std::string_view key) {
  std::string_view section = key.substr(0, key.find('.'));
  std::string keys = key.find('.') == std::string_view::npos ? std::string() : keys_of_section(section);
  if (keys.empty())
    return "unknown key (keys are section.name with sections " + known_sections() + ")";
  return "unknown key (known keys in " + std::string(section) + ": " + keys + ")";
}

// Applies text to key, turning a BadValue into a ConfigError naming key and origin.
void apply(Config& config, std::map<std::string, Origin>& origins, std::string_view key,
           const std::string& text, const fs::path& base, const Origin& origin) {
  const KeySpec* spec = find_spec(key);
  if (!spec) fail(origin, key, unknown_key_problem(key));
  try {
    spec->set(config, text, base);
  } catch (const BadValue& bad) {
    fail(origin, key, "expected " + bad.expected + ", got '" + text + "'");
  }
  origins[std::string(key)] = origin;
}

std::string yaml_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Null: return "no value";
    default: return "a scalar";
  }
}

Origin yaml_origin(const std::string& name, const YAML::Mark& mark) {
  return name + " line " + std::to_string(mark.line + 1);
}

// A section or key name: YAML allows any node as a mapping key ("? [a, b]: 1"); ours are
// plain words (found by the config fuzzer: as<std::string>() threw YAML::BadConversion).
std::string key_name(const YAML::Node& n, const Origin& origin, const std::string& within) {
  if (!n.IsScalar())
    fail(origin, within, std::string(within.empty() ? "a section" : "a key") + " name must be a plain word, got " +
                             yaml_kind(n));
  return n.Scalar();
}

void apply_yaml(Config& config, std::map<std::string, Origin>& origins, const YAML::Node& root,
                const std::string& name, const fs::path& base) {
  if (root.IsNull()) return;  // an empty file: all defaults
  if (!root.IsMap())
    fail(yaml_origin(name, root.Mark()), "",
         "the top level must be a mapping of sections (" + known_sections() + "), got " +
             yaml_kind(root));
  std::set<std::string> seen_sections;
  for (const auto& section : root) {
    const Origin sorigin = yaml_origin(name, section.first.Mark());
    const std::string sname = key_name(section.first, sorigin, "");
    if (keys_of_section(sname).empty())
      fail(sorigin, sname, "unknown section (sections are " + known_sections() + ")");
    if (!seen_sections.insert(sname).second) fail(sorigin, sname, "section given twice");
    if (section.second.IsNull()) continue;
    if (!section.second.IsMap())
      fail(sorigin, sname, "expected a mapping of keys, got " + yaml_kind(section.second));
    std::set<std::string> seen_keys;
    for (const auto& entry : section.second) {
      const Origin origin = yaml_origin(name, entry.first.Mark());
      const std::string key = sname + "." + key_name(entry.first, origin, sname);
      if (!seen_keys.insert(key).second) fail(origin, key, "key given twice");
      if (!find_spec(key)) fail(origin, key, unknown_key_problem(key));
      if (!entry.second.IsScalar())
        fail(origin, key, "expected a single value, got " + yaml_kind(entry.second));
      apply(config, origins, key, entry.second.Scalar(), base, origin);
    }
  }
}

void load_yaml_file(Config& config, std::map<std::string, Origin>& origins, const std::string& file) {
  const std::string name = fs::path(file).filename().string();
  fs::path absolute = fs::absolute(file);
  YAML::Node root;
  try {
    root = YAML::LoadFile(absolute.string());
  } catch (const YAML::BadFile&) {
    throw ConfigError(file + ": cannot read the config file: " + std::strerror(errno));
  } catch (const YAML::ParserException& e) {
    fail(yaml_origin(name, e.mark), "", "YAML syntax error: " + e.msg);
  }
  apply_yaml(config, origins, root, name, absolute.parent_path());
}

void load_yaml_text(Config& config, std::map<std::string, Origin>& origins, const std::string& text,
                    const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    fail(yaml_origin(name, e.mark), "", "YAML syntax error: " + e.msg);
  }
  apply_yaml(config, origins, root, name, fs::current_path());
}

// The rules between keys, and the ones a single setter cannot see. Each message names the
// key it is about and where its value came from.
void validate(Config& c, const std::map<std::string, Origin>& origins) {
  auto origin = [&](const char* key) -> Origin {
    auto it = origins.find(key);
    return it == origins.end() ? Origin("default") : it->second;
  };
  auto value_of = [](uint64_t v) {
    std::string exact = std::to_string(v), short_form = format_size(v);
    return exact == short_form ? exact : exact + " (" + short_form + ")";
  };

  const bool rbd = !c.backing.rbd.empty();
  if (c.backing.path.empty() && !rbd)
    fail("config", "backing.path",
         "missing: give the backing file in the config file or as backing.path=FILE "
         "(or an RBD image as backing.rbd=POOL/IMAGE)");
  if (!c.backing.path.empty() && rbd)
    fail(origin("backing.rbd"), "backing.rbd",
         "serves an RBD image instead of a backing file: give backing.path (" +
             origin("backing.path") + ") or backing.rbd, not both");
  if (!rbd) {
    if (!c.backing.ceph_conf.empty())
      fail(origin("backing.ceph_conf"), "backing.ceph_conf",
           "applies only to an RBD image (backing.rbd), not to a backing file");
    if (!c.backing.ceph_id.empty())
      fail(origin("backing.ceph_id"), "backing.ceph_id",
           "applies only to an RBD image (backing.rbd), not to a backing file");
  } else {
    if (!c.journal.path.empty())
      fail(origin("journal.path"), "journal.path",
           "does not apply with backing.rbd: the journal of an RBD image lives in RADOS beside "
           "it (so that any host can recover it)");
    if (!c.backing.direct_io)
      fail(origin("backing.direct_io"), "backing.direct_io",
           "applies only to a backing file: librbd has no page cache to bypass (its own cache "
           "is always off under untorn)");
  }

  const uint64_t L = c.device.logical_block_size;
  const uint64_t A = c.device.atomic_write_unit_max;
  if (!is_power_of_two(L) || L < 512 || L > 65536)
    fail(origin("device.logical_block_size"), "device.logical_block_size",
         "must be a power of two from 512 to 65536, got " + value_of(L));
  if (!is_power_of_two(A))
    fail(origin("device.atomic_write_unit_max"), "device.atomic_write_unit_max",
         "must be a power of two, got " + value_of(A));
  if (A < L)
    fail(origin("device.atomic_write_unit_max"), "device.atomic_write_unit_max",
         "must be at least device.logical_block_size (" + value_of(L) + ", " +
             origin("device.logical_block_size") + "), got " + value_of(A));
  if (A > kMiB)
    fail(origin("device.atomic_write_unit_max"), "device.atomic_write_unit_max",
         "must be at most 1M, got " + value_of(A));
  const uint64_t N = c.device.native_atomic_unit;
  if (N != 0 && (!is_power_of_two(N) || N < 512 || N > kMiB))
    fail(origin("device.native_atomic_unit"), "device.native_atomic_unit",
         "must be 0 (probe) or a power of two from 512 to 1M, got " + value_of(N));

  if (c.backing.size % L != 0)
    fail(origin("backing.size"), "backing.size",
         "must be a multiple of device.logical_block_size (" + value_of(L) + "), got " +
             value_of(c.backing.size));
  if (c.backing.resize && c.backing.size == 0)
    fail(origin("backing.resize"), "backing.resize", "needs backing.size to resize to");

  const uint64_t F = c.cache.folio_max;
  if (!is_power_of_two(F) || F < L || F > (uint64_t{1} << 30))
    fail(origin("cache.folio_max"), "cache.folio_max",
         "must be a power of two from device.logical_block_size (" + value_of(L) +
             ") to 1G, got " + value_of(F));
  if (c.cache.size < 2 * F)
    fail(origin("cache.size"), "cache.size",
         "must hold at least two of the largest folios (2 x cache.folio_max = " +
             value_of(2 * F) + "), got " + value_of(c.cache.size));
  if (c.cache.dirty_ratio < 1)
    fail(origin("cache.dirty_ratio"), "cache.dirty_ratio", "must be at least 1");
  if (c.cache.dirty_background_ratio > c.cache.dirty_ratio)
    fail(origin("cache.dirty_background_ratio"), "cache.dirty_background_ratio",
         "must not exceed cache.dirty_ratio (" + std::to_string(c.cache.dirty_ratio) + ", " +
             origin("cache.dirty_ratio") + "), got " + std::to_string(c.cache.dirty_background_ratio));
  if (c.cache.dirty_expire.count() <= 0)
    fail(origin("cache.dirty_expire"), "cache.dirty_expire", "must be longer than 0");

  if (c.journal.checkpoint_size < kMiB)
    fail(origin("journal.checkpoint_size"), "journal.checkpoint_size",
         "must be at least 1M, got " + value_of(c.journal.checkpoint_size));
  // With backing.rbd the journal is one RADOS object: the OSDs refuse objects past
  // osd_max_object_size (128M by default), so it is checkpointed well before.
  if (rbd && c.journal.checkpoint_size > 64 * kMiB)
    fail(origin("journal.checkpoint_size"), "journal.checkpoint_size",
         "must be at most 64M with backing.rbd (the journal is one RADOS object, and the OSDs "
         "refuse objects past osd_max_object_size, 128M by default), got " + value_of(c.journal.checkpoint_size));
  const uint64_t S = c.test.unsafe_split_writes;
  if (S != 0 && (S % L != 0 || S > kMiB))
    fail(origin("test.unsafe_split_writes"), "test.unsafe_split_writes",
         "must be 0 or a multiple of device.logical_block_size up to 1M, got " + value_of(S));
  if (c.stats.interval < std::chrono::seconds(1))
    fail(origin("stats.interval"), "stats.interval",
         "must be at least 1s, got " + std::to_string(c.stats.interval.count()) + "ms");
  if (rbd) return;
  if (c.journal.path.empty()) c.journal.path = c.backing.path + ".journal";
  if (c.journal.path == c.backing.path)
    fail(origin("journal.path"), "journal.path", "must not be the backing file itself");
}

}  // namespace

Config ConfigLoader::load() const {
  Config config;
  std::map<std::string, Origin> origins;
  if (!file_.empty()) load_yaml_file(config, origins, file_);
  if (!text_.empty()) load_yaml_text(config, origins, text_, text_name_);
  const fs::path cwd = fs::current_path();
  for (const auto& [key, value] : overrides_)
    apply(config, origins, key, value, cwd, "command line (" + key + "=" + value + ")");
  validate(config, origins);
  return config;
}

bool ConfigLoader::is_known_key(std::string_view key) { return find_spec(key) != nullptr; }

std::vector<std::pair<std::string, std::string>> ConfigLoader::effective_values(const Config& config) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& spec : key_specs()) out.emplace_back(spec.name, spec.show(config));
  return out;
}

std::vector<std::pair<std::string, std::string>> ConfigLoader::key_help() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& spec : key_specs()) out.emplace_back(spec.name, spec.help);
  return out;
}

std::string ConfigLoader::help_text() {
  std::string out = "config=FILE.yaml                 YAML configuration file\n";
  for (const auto& s : key_specs()) {
    std::string name(s.name);
    name += "=...";
    if (name.size() < 33) name.resize(33, ' ');
    else name += ' ';
    out += name + std::string(s.help) + "\n";
  }
  return out;
}

}  // namespace untorn::conf
