// conf/config.h — the Config value type: everything an untorn export is told.
//
// Owns: plain values only, with their defaults. A Config that came out of ConfigLoader has
// passed validate() and so keeps these invariants:
//   - exactly one of backing.path (absolute) and backing.rbd ("pool/image") is set;
//     backing.size is 0 ("use the file's or image's size") or a multiple of
//     device.logical_block_size; ceph_conf and ceph_id are set only with backing.rbd;
//   - L = logical_block_size is a power of two in [512, 65536];
//   - A = atomic_write_unit_max is a power of two with L <= A <= 1 MiB;
//   - native_atomic_unit is 0 ("probe it") or a power of two in [512, 1 MiB];
//   - cache.folio_max is a power of two >= L; cache.size >= 2 * folio_max;
//   - 0 <= dirty_background_ratio <= dirty_ratio <= 100, dirty_ratio >= 1;
//   - journal.path is absolute (defaults to backing.path + ".journal"); empty with
//     backing.rbd, whose journal lives in RADOS beside the image;
//   - stats.file is empty or absolute; stats.interval >= 1 s.
// The cache and journal sections are validated now and used by later layers.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace untorn {

enum class CacheMode { writeback, writethrough, uncached };
enum class JournalMode { automatic, always, never };

const char* to_string(CacheMode mode);
const char* to_string(JournalMode mode);

struct Config {
  struct Backing {
    std::string path;
    uint64_t size = 0;       // 0: take the existing file's size
    bool resize = false;     // allow growing/shrinking an existing file to `size`
    bool direct_io = true;   // O_DIRECT, with a logged fallback where refused
    std::string rbd;         // "pool/image": serve an RBD image instead of a file
    std::string ceph_conf;   // with rbd: ceph.conf to read (empty: librados' own search)
    std::string ceph_id;     // with rbd: the client id, without "client." (empty: admin)
  } backing;

  struct Device {
    uint32_t logical_block_size = 4096;           // L
    uint32_t atomic_write_unit_max = 64 * 1024;   // A
    uint64_t native_atomic_unit = 0;              // 0: probe the backing's device
    bool readonly = false;                        // also set by nbdkit -r
  } device;

  struct Cache {
    CacheMode mode = CacheMode::writeback;
    uint64_t size = uint64_t{1} << 30;
    uint64_t folio_max = uint64_t{2} << 20;
    unsigned dirty_background_ratio = 10;
    unsigned dirty_ratio = 40;
    std::chrono::milliseconds dirty_expire{5000};
    bool populate_on_read = true;
  } cache;

  struct Journal {
    std::string path;   // empty until validated: then backing.path + ".journal" (stays
                        // empty with backing.rbd: that journal is a RADOS object)
    JournalMode mode = JournalMode::automatic;
    uint64_t checkpoint_size = uint64_t{64} << 20;  // records before a checkpoint
  } journal;

  struct Stats {
    std::string file;                       // empty: no stats file
    std::chrono::milliseconds interval{10000};
  } stats;

  // Test-only switches: negative controls and benchmarks. They make untorn unsafe and
  // are logged loudly when set; never use them for data you care about.
  struct Test {
    bool unsafe_allow_journal_never = false;  // accept journal.mode=never where it tears
    uint64_t unsafe_split_writes = 0;         // write in place in pieces of this size
    uint64_t kill_after_journal_commits = 0;  // SIGKILL itself after this many commits
  } test;
};

}  // namespace untorn
