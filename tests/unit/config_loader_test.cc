#include "conf/config_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/temp_dir.h"

namespace untorn::conf {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

Config load_yaml(const std::string& yaml, std::vector<std::pair<std::string, std::string>> overrides = {}) {
  ConfigLoader loader;
  loader.set_text(yaml, "disk.yaml");
  for (auto& [k, v] : overrides) loader.add_override(k, v);
  return loader.load();
}

// The message of the ConfigError that loading throws ("" if it loads).
std::string error_of(const std::string& yaml,
                     std::vector<std::pair<std::string, std::string>> overrides = {}) {
  try {
    load_yaml(yaml, std::move(overrides));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const std::string kBacking = "backing:\n  path: /tmp/x.img\n";

TEST(ConfigLoaderTest, DefaultsNeedOnlyABackingPath) {
  Config c = load_yaml(kBacking);
  EXPECT_EQ(c.backing.path, "/tmp/x.img");
  EXPECT_EQ(c.backing.size, 0u);
  EXPECT_EQ(c.device.logical_block_size, 4096u);
  EXPECT_EQ(c.device.atomic_write_unit_max, 65536u);
  EXPECT_EQ(c.device.native_atomic_unit, 0u);
  EXPECT_EQ(c.cache.mode, CacheMode::writeback);
  EXPECT_EQ(c.cache.size, uint64_t{1} << 30);
  EXPECT_EQ(c.cache.folio_max, uint64_t{2} << 20);
  EXPECT_EQ(c.cache.dirty_background_ratio, 10u);
  EXPECT_EQ(c.cache.dirty_ratio, 40u);
  EXPECT_EQ(c.cache.dirty_expire, std::chrono::seconds(5));
  EXPECT_EQ(c.journal.mode, JournalMode::automatic);
  EXPECT_EQ(c.journal.path, "/tmp/x.img.journal");
}

TEST(ConfigLoaderTest, FullExampleParses) {
  Config c = load_yaml(R"(
backing:
  path: /data/disk.img
  size: 8G
device:
  logical_block_size: 512
  atomic_write_unit_max: 16K
cache:
  mode: uncached
  size: 64M
  folio_max: 1M
  dirty_background_ratio: 5
  dirty_ratio: 20
  dirty_expire: 500ms
journal:
  path: /data/j
  mode: always
)");
  EXPECT_EQ(c.backing.size, uint64_t{8} << 30);
  EXPECT_EQ(c.device.logical_block_size, 512u);
  EXPECT_EQ(c.device.atomic_write_unit_max, 16384u);
  EXPECT_EQ(c.cache.mode, CacheMode::uncached);
  EXPECT_EQ(c.cache.size, uint64_t{64} << 20);
  EXPECT_EQ(c.cache.folio_max, uint64_t{1} << 20);
  EXPECT_EQ(c.cache.dirty_expire, std::chrono::milliseconds(500));
  EXPECT_EQ(c.journal.path, "/data/j");
  EXPECT_EQ(c.journal.mode, JournalMode::always);
}

TEST(ConfigLoaderTest, CommandLineOverridesFileWhateverTheOrder) {
  Config c = load_yaml(kBacking + "device:\n  atomic_write_unit_max: 16K\n",
                       {{"device.atomic_write_unit_max", "128K"}, {"cache.mode", "writethrough"}});
  EXPECT_EQ(c.device.atomic_write_unit_max, 131072u);
  EXPECT_EQ(c.cache.mode, CacheMode::writethrough);
}

TEST(ConfigLoaderTest, LaterCommandLineKeyWins) {
  Config c = load_yaml(kBacking, {{"backing.size", "1G"}, {"backing.size", "2G"}});
  EXPECT_EQ(c.backing.size, uint64_t{2} << 30);
}

TEST(ConfigLoaderTest, WorksWithoutAFile) {
  ConfigLoader loader;
  loader.add_override("backing.path", "/abs/disk.img");
  loader.add_override("backing.size", "1G");
  Config c = loader.load();
  EXPECT_EQ(c.backing.path, "/abs/disk.img");
  EXPECT_EQ(c.backing.size, uint64_t{1} << 30);
}

TEST(ConfigLoaderTest, RelativePathsInFileResolveAgainstItsDirectory) {
  untorn::testing::TempDir dir;
  std::ofstream(dir.file("disk.yaml")) << "backing:\n  path: sub/disk.img\njournal:\n  path: j.log\n";
  ConfigLoader loader;
  loader.set_file(dir.file("disk.yaml"));
  Config c = loader.load();
  EXPECT_EQ(c.backing.path, dir.file("sub/disk.img"));
  EXPECT_EQ(c.journal.path, dir.file("j.log"));
}

TEST(ConfigLoaderTest, RelativePathsOnCommandLineResolveAgainstWorkingDirectory) {
  ConfigLoader loader;
  loader.add_override("backing.path", "disk.img");
  Config c = loader.load();
  EXPECT_EQ(c.backing.path, (std::filesystem::current_path() / "disk.img").string());
}

TEST(ConfigLoaderTest, MissingBackingPath) {
  EXPECT_THAT(error_of(""), AllOf(HasSubstr("backing.path"), HasSubstr("missing")));
}

TEST(ConfigLoaderTest, UnknownKeyNamesKeyAndLine) {
  EXPECT_EQ(error_of(kBacking + "cache:\n  sise: 1G\n"),
            "disk.yaml line 4: cache.sise: unknown key (known keys in cache: mode, size, "
            "folio_max, dirty_background_ratio, dirty_ratio, dirty_expire, populate_on_read)");
}

TEST(ConfigLoaderTest, UnknownSectionNamesLine) {
  EXPECT_THAT(error_of(kBacking + "devise:\n  x: 1\n"),
              AllOf(HasSubstr("disk.yaml line 3: devise: unknown section"),
                    HasSubstr("backing, device, cache, journal")));
}

TEST(ConfigLoaderTest, UnknownCommandLineKey) {
  EXPECT_THAT(error_of(kBacking, {{"device.block_size", "4096"}}),
              AllOf(HasSubstr("command line (device.block_size=4096): device.block_size: unknown key"),
                    HasSubstr("logical_block_size")));
  EXPECT_THAT(error_of(kBacking, {{"nonsense", "1"}}), HasSubstr("nonsense: unknown key"));
}

TEST(ConfigLoaderTest, WrongTypeNamesKeyLineAndExpectation) {
  EXPECT_EQ(error_of(kBacking + "device:\n  logical_block_size: big\n"),
            "disk.yaml line 4: device.logical_block_size: expected a size such as 4096, 64K or "
            "1G, got 'big'");
  EXPECT_EQ(error_of(kBacking + "device:\n  logical_block_size: [1, 2]\n"),
            "disk.yaml line 4: device.logical_block_size: expected a single value, got a list");
  EXPECT_EQ(error_of(kBacking + "cache:\n  mode: writebehind\n"),
            "disk.yaml line 4: cache.mode: expected one of writeback, writethrough, uncached, got "
            "'writebehind'");
  EXPECT_EQ(error_of(kBacking + "backing:\n  resize: perhaps\n").empty(), false);
  EXPECT_THAT(error_of(kBacking + "cache:\n  dirty_ratio: 101\n"),
              HasSubstr("line 4: cache.dirty_ratio: expected a whole number from 0 to 100, got '101'"));
  EXPECT_THAT(error_of(kBacking + "cache:\n  dirty_expire: soon\n"),
              HasSubstr("line 4: cache.dirty_expire: expected a duration"));
  EXPECT_THAT(error_of(kBacking + "journal:\n  mode: sometimes\n"),
              HasSubstr("line 4: journal.mode: expected one of auto, always, never"));
}

TEST(ConfigLoaderTest, DuplicateKeyAndSection) {
  EXPECT_THAT(error_of("backing:\n  path: /a\n  path: /b\n"),
              HasSubstr("disk.yaml line 3: backing.path: key given twice"));
}

TEST(ConfigLoaderTest, SectionMustBeAMapping) {
  EXPECT_THAT(error_of(kBacking + "device: 4096\n"),
              HasSubstr("disk.yaml line 3: device: expected a mapping of keys, got a scalar"));
  EXPECT_THAT(error_of("- a\n- b\n"), HasSubstr("the top level must be a mapping"));
}

TEST(ConfigLoaderTest, SyntaxErrorNamesLine) {
  EXPECT_THAT(error_of("backing:\n  path: /a\n   bad: [\n"),
              AllOf(HasSubstr("disk.yaml line"), HasSubstr("YAML syntax error")));
}

TEST(ConfigLoaderTest, LogicalBlockSizeMustBePowerOfTwoInRange) {
  for (const char* bad : {"3000", "256", "128K"})
    EXPECT_THAT(error_of(kBacking + "device:\n  logical_block_size: " + bad + "\n"),
                HasSubstr("disk.yaml line 4: device.logical_block_size: must be a power of two "
                          "from 512 to 65536"))
        << bad;
  for (const char* good : {"512", "4K", "64K"})
    EXPECT_EQ(error_of(kBacking + "device:\n  logical_block_size: " + good +
                       "\n  atomic_write_unit_max: 64K\n"),
              "")
        << good;
}

TEST(ConfigLoaderTest, AtomicUnitRules) {
  EXPECT_THAT(error_of(kBacking + "device:\n  atomic_write_unit_max: 48K\n"),
              HasSubstr("line 4: device.atomic_write_unit_max: must be a power of two, got 49152 (48K)"));
  EXPECT_EQ(error_of(kBacking + "device:\n  logical_block_size: 16K\n  atomic_write_unit_max: 8K\n"),
            "disk.yaml line 5: device.atomic_write_unit_max: must be at least "
            "device.logical_block_size (16384 (16K), disk.yaml line 4), got 8192 (8K)");
  EXPECT_THAT(error_of(kBacking + "device:\n  atomic_write_unit_max: 2M\n"),
              HasSubstr("line 4: device.atomic_write_unit_max: must be at most 1M, got 2097152 (2M)"));
  // A default A below a configured L is reported against the default.
  EXPECT_THAT(error_of(kBacking, {{"device.logical_block_size", "64K"}, {"device.atomic_write_unit_max", "32K"}}),
              HasSubstr("command line (device.atomic_write_unit_max=32K): device.atomic_write_unit_max: must be at least"));
  EXPECT_EQ(error_of(kBacking + "device:\n  atomic_write_unit_max: 1M\n"), "");
}

TEST(ConfigLoaderTest, NativeAtomicUnitRules) {
  EXPECT_THAT(error_of(kBacking + "device:\n  native_atomic_unit: 1000\n"),
              HasSubstr("line 4: device.native_atomic_unit: must be 0 (probe) or a power of two"));
  EXPECT_EQ(error_of(kBacking + "device:\n  native_atomic_unit: 16K\n"), "");
}

TEST(ConfigLoaderTest, BackingSizeMustBeMultipleOfL) {
  EXPECT_THAT(error_of(kBacking + "  size: 10000\n"),
              HasSubstr("line 3: backing.size: must be a multiple of device.logical_block_size"));
  EXPECT_THAT(error_of(kBacking + "  resize: true\n"),
              HasSubstr("backing.resize: needs backing.size"));
}

TEST(ConfigLoaderTest, CacheRules) {
  EXPECT_THAT(error_of(kBacking + "cache:\n  folio_max: 3M\n"),
              HasSubstr("line 4: cache.folio_max: must be a power of two"));
  EXPECT_THAT(error_of(kBacking + "device:\n  logical_block_size: 64K\ncache:\n  folio_max: 4K\n"),
              HasSubstr("line 6: cache.folio_max: must be a power of two from device.logical_block_size"));
  EXPECT_THAT(error_of(kBacking + "cache:\n  size: 2M\n"),
              HasSubstr("line 4: cache.size: must hold at least two of the largest folios"));
  EXPECT_THAT(error_of(kBacking + "cache:\n  dirty_background_ratio: 50\n"),
              HasSubstr("line 4: cache.dirty_background_ratio: must not exceed cache.dirty_ratio (40, default)"));
  EXPECT_THAT(error_of(kBacking + "cache:\n  dirty_ratio: 0\n  dirty_background_ratio: 0\n"),
              HasSubstr("line 4: cache.dirty_ratio: must be at least 1"));
  EXPECT_THAT(error_of(kBacking + "cache:\n  dirty_expire: 0s\n"),
              HasSubstr("line 4: cache.dirty_expire: must be longer than 0"));
}

TEST(ConfigLoaderTest, JournalMustNotBeTheBackingFile) {
  EXPECT_THAT(error_of(kBacking + "journal:\n  path: /tmp/x.img\n"),
              HasSubstr("line 4: journal.path: must not be the backing file itself"));
}

TEST(ConfigLoaderTest, UnreadableFile) {
  ConfigLoader loader;
  loader.set_file("/nonexistent/disk.yaml");
  try {
    loader.load();
    FAIL() << "loaded a missing file";
  } catch (const ConfigError& e) {
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("/nonexistent/disk.yaml"), HasSubstr("cannot read the config file")));
  }
}

TEST(ConfigLoaderTest, EmptyFileMeansDefaults) {
  EXPECT_EQ(error_of("", {{"backing.path", "/x"}}), "");
}

TEST(ConfigLoaderTest, EffectiveValuesCoverEveryKeyAndLoadBack) {
  Config c = load_yaml(kBacking + "device:\n  atomic_write_unit_max: 128K\ncache:\n  dirty_expire: 2s\n");
  auto values = ConfigLoader::effective_values(c);
  ConfigLoader again;
  for (const auto& [k, v] : values) {
    EXPECT_TRUE(ConfigLoader::is_known_key(k)) << k;
    again.add_override(k, v);
  }
  EXPECT_EQ(values.size(), 26u);
  Config back = again.load();
  EXPECT_EQ(back.device.atomic_write_unit_max, 131072u);
  EXPECT_EQ(back.cache.dirty_expire, std::chrono::seconds(2));
  EXPECT_EQ(back.journal.path, c.journal.path);
  EXPECT_EQ(back.backing.path, c.backing.path);
}

TEST(ConfigLoaderTest, StatsAndReadonlyKeys) {
  Config c = load_yaml(kBacking + "stats:\n  file: stats.jsonl\n  interval: 1m\ndevice:\n  readonly: true\n");
  EXPECT_EQ(c.stats.file, (std::filesystem::current_path() / "stats.jsonl").string());
  EXPECT_EQ(c.stats.interval, std::chrono::minutes(1));
  EXPECT_TRUE(c.device.readonly);
  EXPECT_EQ(load_yaml(kBacking).stats.file, "");
  EXPECT_EQ(load_yaml(kBacking).stats.interval, std::chrono::seconds(10));
  EXPECT_FALSE(load_yaml(kBacking).device.readonly);
  ConfigLoader loader;
  loader.add_override("backing.path", "/x");
  loader.add_override("stats.interval", "500ms");
  try {
    loader.load();
    ADD_FAILURE() << "stats.interval=500ms accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "command line (stats.interval=500ms): stats.interval: must be at least 1s, got 500ms");
  }
}

TEST(ConfigLoaderTest, RbdBackingKeys) {
  Config c = load_yaml("backing:\n  rbd: rbd/disk1\n  ceph_conf: /etc/ceph/test.conf\n  ceph_id: untorn\n");
  EXPECT_EQ(c.backing.rbd, "rbd/disk1");
  EXPECT_EQ(c.backing.ceph_conf, "/etc/ceph/test.conf");
  EXPECT_EQ(c.backing.ceph_id, "untorn");
  EXPECT_EQ(c.backing.path, "");
  EXPECT_EQ(c.journal.path, "") << "an RBD image's journal lives in RADOS";
  // Defaults: librados' own ceph.conf search, client.admin.
  Config d = load_yaml("", {{"backing.rbd", "pool-1/img.2"}});
  EXPECT_EQ(d.backing.ceph_conf, "");
  EXPECT_EQ(d.backing.ceph_id, "");
  // Its effective values load back as they are.
  ConfigLoader again;
  for (const auto& [k, v] : ConfigLoader::effective_values(c)) again.add_override(k, v);
  EXPECT_EQ(ConfigLoader::effective_values(again.load()), ConfigLoader::effective_values(c));
}

TEST(ConfigLoaderTest, RbdBackingErrorsNameTheKeyAndLine) {
  for (const char* bad : {"disk1", "/disk1", "rbd/", "rbd/a/b", "rbd/disk@snap", "rbd/my disk"})
    EXPECT_THAT(error_of("backing:\n  rbd: \"" + std::string(bad) + "\"\n"),
                AllOf(HasSubstr("disk.yaml line 2: backing.rbd: expected POOL/IMAGE, such as rbd/disk1"),
                      HasSubstr(bad)))
        << bad;
  EXPECT_THAT(error_of("backing:\n  rbd: rbd/d\n  ceph_id: client.admin\n"),
              HasSubstr("disk.yaml line 3: backing.ceph_id: expected a client id such as admin or untorn "
                        "(without \"client.\")"));
  EXPECT_THAT(error_of("backing:\n  rbd: rbd/d\n  ceph_id: a;b\n"),
              HasSubstr("disk.yaml line 3: backing.ceph_id: expected a client id"));
  EXPECT_THAT(error_of(kBacking + "  rbd: rbd/d\n"),
              HasSubstr("disk.yaml line 3: backing.rbd: serves an RBD image instead of a backing file: "
                        "give backing.path (disk.yaml line 2) or backing.rbd, not both"));
  EXPECT_THAT(error_of(kBacking + "  ceph_id: admin\n"),
              HasSubstr("disk.yaml line 3: backing.ceph_id: applies only to an RBD image (backing.rbd)"));
  EXPECT_THAT(error_of(kBacking + "  ceph_conf: /etc/ceph/ceph.conf\n"),
              HasSubstr("disk.yaml line 3: backing.ceph_conf: applies only to an RBD image"));
  EXPECT_THAT(error_of("backing:\n  rbd: rbd/d\njournal:\n  path: /j\n"),
              HasSubstr("disk.yaml line 4: journal.path: does not apply with backing.rbd: the journal "
                        "of an RBD image lives in RADOS"));
  EXPECT_THAT(error_of("backing:\n  rbd: rbd/d\n  direct_io: false\n"),
              HasSubstr("disk.yaml line 3: backing.direct_io: applies only to a backing file"));
  EXPECT_THAT(error_of(""), HasSubstr("or an RBD image as backing.rbd=POOL/IMAGE"));
  EXPECT_THAT(error_of("backing:\n  rbd: rbd/d\njournal:\n  checkpoint_size: 100M\n"),
              HasSubstr("disk.yaml line 4: journal.checkpoint_size: must be at most 64M with backing.rbd"));
  EXPECT_EQ(error_of(kBacking + "journal:\n  checkpoint_size: 100M\n"), "");
}

TEST(ConfigLoaderTest, HelpListsEveryKey) {
  std::string help = ConfigLoader::help_text();
  for (const char* key : {"backing.path", "device.atomic_write_unit_max", "cache.dirty_expire",
                          "journal.mode"}) {
    EXPECT_THAT(help, HasSubstr(key));
    EXPECT_TRUE(ConfigLoader::is_known_key(key));
  }
}

}  // namespace
// Findings of the config fuzzer (tests/fuzz/config_fuzz.cc), one test each.
// 1: a YAML mapping key that is not a plain word ("? ..." complex keys) escaped as
// YAML::BadConversion instead of a ConfigError naming the line.
TEST(ConfigLoaderTest, FuzzFindingComplexKeysAreRefusedWithTheirLine) {
  EXPECT_THAT(error_of("backing:\n  path: /data/disk.img\n? size: 8G\n"),
              HasSubstr("disk.yaml line 3: a section name must be a plain word, got a mapping"));
  EXPECT_THAT(error_of("backing:\n  ? [path, size]\n  : 1\n"),
              HasSubstr("disk.yaml line 2: backing: a key name must be a plain word, got a list"));
  // The fuzzer's own input, as it found it.
  const std::string found = "backing:\n  path: /data/disk\xff\xff\xff.img\n? size: 8becG\ndkie";
  EXPECT_THAT(error_of(found), HasSubstr("line"));
}

// 2: backing.path "//" (a directory) loaded, and its derived journal path "//.journal"
// printed back normalised to "/.journal", another path (the round trip failed). A path
// naming a directory is refused for every file key.
TEST(ConfigLoaderTest, FuzzFindingDirectoryPathsAreRefused) {
  for (const char* dir : {"//", "/data/", "/data/.", "/data/..", "."}) {
    SCOPED_TRACE(dir);
    EXPECT_THAT(error_of(std::string("backing:\n path: ") + dir + "\n"),
                HasSubstr("disk.yaml line 2: backing.path: expected a file path, not a directory, got '" +
                          std::string(dir) + "'"));
    EXPECT_THAT(error_of(kBacking, {{"journal.path", dir}}),
                HasSubstr("journal.path: expected a file path, not a directory"));
    EXPECT_THAT(error_of(kBacking, {{"stats.file", dir}}),
                HasSubstr("stats.file: expected a file path, not a directory"));
  }
  // The fuzzer's own input, as it found it.
  EXPECT_THAT(error_of("backing:\n path: //\n"), HasSubstr("not a directory"));
  // Paths that only look odd still name files, normalised.
  EXPECT_EQ(load_yaml("backing:\n path: //data//disk.img\n").backing.path, "/data/disk.img");
  EXPECT_EQ(load_yaml("backing:\n path: //data//disk.img\n").journal.path, "/data/disk.img.journal");
}

}  // namespace untorn::conf
