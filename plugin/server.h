// plugin/server.h — the export being served: config, device, journal and request path.
//
// Owns, in construction order (each later one holds references to earlier ones, so they
// are destroyed in reverse): the Backing (a file, or an RBD image), the journal file and its writer (unless
// journal.mode is never), the ExtentMap and the MappedDevice over the backing file (which
// keeps the map current), the AtomicWriter writing through it and the CachedPath (the
// folio cache, in the configured cache.mode). The constructor runs
// journal recovery before anything is served. Built once in nbdkit's get_ready (before
// nbdkit forks, so errors reach the user's terminal), destroyed at unload. Nothing here
// calls nbdkit: plugin/untorn_plugin.cc is the only file that does.
// Read-only (device.readonly, or nbdkit -r): the backing file is opened O_RDONLY with a
// shared lock, no journal is written or replayed (a journal holding records is refused,
// so a read-only view is never an unrecovered one), and no writeback thread starts.
#pragma once

#include <memory>
#include <string>

#include <atomic>
#include <chrono>
#include <mutex>

#include "cache/cached_path.h"
#include "cache/request_path.h"
#include "conf/config.h"
#include "device/atomic_writer.h"
#include "device/backing.h"
#include "device/journal_file.h"
#include "device/journal_writer.h"
#include "device/recovery.h"
#include "plugin/stats_file.h"
#include "util/periodic_thread.h"
#include "util/rate_limited_log.h"

namespace untorn {

class Server {
 public:
  explicit Server(Config config);

  const Config& config() const { return config_; }
  RequestPath& path() { return *path_; }
  const Backing& device() const { return *device_; }
  const AtomicWriter& writer() const { return *writer_; }
  uint64_t native_atomic_unit() const { return native_atomic_unit_; }
  const RecoveryResult& recovery() const { return recovery_; }

  bool readonly() const { return config_.device.readonly; }

  // After nbdkit forks: background writeback (unless read-only) and a once-a-second tick
  // that checks the backing file and writes the stats file (stats.file) every
  // stats.interval; with log_stats (-D untorn.stats=1) the counters are logged then too.
  void start(bool log_stats);
  // At nbdkit's cleanup (no connection left): everything written back and synced, threads
  // stopped, the final stats line written. Progress and errors are logged (the data stays
  // in the journal/cache state they reached).
  void shutdown();
  CacheCounters counters();
  // Changing the backing file behind a running server is not supported: once its size is
  // seen to differ from the served size (probe_now: look now; else what the last look, at
  // a flush or the once-a-second tick, found), every write, zero, trim and flush fails
  // with EIO and a message saying so. Throws IoError.
  void check_backing(bool probe_now);
  // "untorn: logical_block_size=4096 atomic_write_unit_max=65536 ..."
  const std::string& description() const { return description_; }

  // NBD block size constraints: minimum L, preferred max(A, 4096), maximum 32 MiB. The
  // maximum must stay >= A, or QEMU would split a guest's atomic write.
  uint32_t min_block_size() const { return config_.device.logical_block_size; }
  uint32_t preferred_block_size() const;
  static constexpr uint32_t kMaxBlockSize = 32u << 20;

 private:
  uint64_t resolve_native_atomic_unit() const;
  void check_journal_mode() const;
  void refuse_pending_journal_readonly() const;
  journal::Identity identity() const;
  void tick();

  Config config_;
  // Opened first: a stats.file that cannot be opened is refused before anything else
  // (the backing file, the journal) is created or changed.
  std::unique_ptr<StatsFile> stats_file_;
  std::unique_ptr<Backing> device_;
  uint64_t native_atomic_unit_;
  std::unique_ptr<JournalFile> journal_file_;
  RecoveryResult recovery_;
  std::unique_ptr<JournalWriter> journal_;
  std::unique_ptr<ExtentMap> extent_map_;
  std::unique_ptr<MappedDevice> mapped_;
  std::unique_ptr<AtomicWriter> writer_;
  std::unique_ptr<CachedPath> path_;
  std::chrono::steady_clock::time_point next_stats_;  // ticker thread only
  bool log_stats_ = false;
  std::atomic<bool> backing_changed_{false};
  std::once_flag backing_changed_logged_;
  std::string backing_changed_message_;  // set once, before backing_changed_
  std::string description_;
  RateLimitedLog tick_errors_;
  // Last: destroyed (stopped and joined) first, before anything tick() uses.
  PeriodicThread ticker_;
};

}  // namespace untorn
