#include "plugin/server.h"

#include <algorithm>
#include <functional>
#include <memory>

#include "conf/units.h"
#include "util/io_error.h"
#include "util/log.h"

namespace untorn {
namespace {

// The extent map's memory bound: 1/64 of the cache budget (16 MiB for the default 1 GiB
// cache: 262,144 runs, or the bitmaps of 4,096 fragmented 64 MiB shards at L = 4K), at
// least 4 MiB.
uint64_t extent_map_bytes(uint64_t cache_size) {
  return std::max<uint64_t>(cache_size / 64, uint64_t{4} << 20);
}

}  // namespace

Server::Server(Config config)
    : config_(std::move(config)),
      stats_file_(config_.stats.file.empty() ? nullptr : std::make_unique<StatsFile>(config_.stats.file)),
      device_(open_backing(config_.backing, config_.device.logical_block_size,
                           config_.device.readonly)),
      native_atomic_unit_(resolve_native_atomic_unit()) {
  if (readonly()) refuse_pending_journal_readonly();
  else check_journal_mode();
  if (!readonly() && config_.journal.mode != JournalMode::never) {
    journal_file_ = device_->open_journal(config_.journal);
    recovery_ = recover_journal(*device_, *journal_file_, identity());
    journal_ = std::make_unique<JournalWriter>(*journal_file_, recovery_.header);
  }
  AtomicWriterOptions options;
  options.atomic_write_unit_max = config_.device.atomic_write_unit_max;
  options.native_atomic_unit = native_atomic_unit_;
  options.mode = readonly() ? JournalMode::never : config_.journal.mode;
  options.checkpoint_bytes = config_.journal.checkpoint_size;
  options.unsafe_split_writes = static_cast<uint32_t>(config_.test.unsafe_split_writes);
  if (options.unsafe_split_writes)
    log_warning("test.unsafe_split_writes is set: writes are split and CAN TEAR (test only)");
  options.kill_after_journal_commits = config_.test.kill_after_journal_commits;
  if (options.kill_after_journal_commits)
    log_warning("test.kill_after_journal_commits is set: the server kills itself after " +
                std::to_string(options.kill_after_journal_commits) + " journal commit(s) (test only)");
  // The extent map starts empty, after recovery: what replay wrote is probed when asked.
  ExtentMap::Options map_options;
  map_options.max_bytes = extent_map_bytes(config_.cache.size);
  extent_map_ = std::make_unique<ExtentMap>(*device_, config_.device.logical_block_size, map_options);
  mapped_ = std::make_unique<MappedDevice>(*device_, *extent_map_);
  writer_ = std::make_unique<AtomicWriter>(*mapped_, journal_.get(), options);
  path_ = std::make_unique<CachedPath>(*mapped_, *extent_map_, *writer_, config_.cache,
                                       config_.device.logical_block_size,
                                       config_.device.atomic_write_unit_max);
  description_ = "untorn: logical_block_size=" + std::to_string(config_.device.logical_block_size) +
                 " atomic_write_unit_min=" + std::to_string(config_.device.logical_block_size) +
                 " atomic_write_unit_max=" + std::to_string(config_.device.atomic_write_unit_max) +
                 " cache_mode=" + std::string(to_string(config_.cache.mode)) +
                 " journal=" + (readonly() ? "off" : to_string(config_.journal.mode)) +
                 " native_atomic_unit=" + std::to_string(native_atomic_unit_) +
                 (readonly() ? " readonly" : "");
}

void Server::refuse_pending_journal_readonly() const {
  // Whatever journal.mode says now: an earlier run in another mode may have left records.
  std::unique_ptr<JournalFile> journal = device_->open_journal_readonly(config_.journal);
  if (!journal) return;
  const PendingRecords pending = pending_journal_records(*journal, device_->size(), identity());
  if (pending.records == 0) return;
  const std::string what = "journal " + journal->name() + " holds " +
                           std::to_string(pending.records) + " record(s) (" +
                           std::to_string(pending.bytes) + " bytes) ";
  if (pending.foreign)
    throw IoError(EINVAL, what + "for another backing; a read-only server does not serve "
                                 "beside them. If the backing was copied or restored on "
                                 "purpose, " + journal->set_aside_advice());
  throw IoError(EBUSY, what + "of acknowledged writes that may not be in the backing file "
                              "yet, and a read-only server cannot replay them: start untorn once "
                              "read-write (without -r or device.readonly) to recover, stop it, "
                              "then serve read-only");
}

journal::Identity Server::identity() const {
  return device_->identity(config_.device.logical_block_size);
}

// device.native_atomic_unit, else what the backing says of itself (the physical block
// size of the device under a backing file, an assumption about the storage documented in
// README; an RBD image's object size), else 512 (one sector, the least any disk promises).
uint64_t Server::resolve_native_atomic_unit() const {
  if (config_.device.native_atomic_unit != 0) return config_.device.native_atomic_unit;
  const uint64_t native = device_->native_atomic_unit();
  if (native != 0) return native;
  log_warning("cannot tell the native atomic unit of the storage under the " + device_->description() +
              "; assuming writes of 512 bytes are atomic (set device.native_atomic_unit)");
  return 512;
}

void Server::check_journal_mode() const {
  if (config_.journal.mode != JournalMode::never) return;
  const uint64_t L = config_.device.logical_block_size;
  const uint64_t A = config_.device.atomic_write_unit_max;
  // Eligible writes are up to A long at any L-aligned offset: each lies inside one
  // naturally aligned native unit only when A is L and L fits in the unit (a 2L write at
  // one L before a unit boundary crosses it).
  if (A == L && L <= native_atomic_unit_) return;
  if (config_.test.unsafe_allow_journal_never) {
    log_warning("journal.mode=never where atomic writes can cross a native atomic unit: "
                "atomic writes CAN TEAR on a crash (test.unsafe_allow_journal_never)");
    return;
  }
  // RWF_ATOMIC alone cannot cover every eligible write: the contract makes writes of up
  // to A at any L-aligned offset eligible, and RWF_ATOMIC needs natural alignment.
  std::string fix = "use journal.mode=auto";
  if (L <= native_atomic_unit_)
    fix += ", or set device.atomic_write_unit_max to device.logical_block_size (" + conf::format_size(L) + ")";
  throw IoError(EINVAL, "journal.mode: never is unsafe here: an atomic write of up to "
                        "device.atomic_write_unit_max (" + conf::format_size(A) + ") at any "
                        "device.logical_block_size (" + conf::format_size(L) + ") boundary can "
                        "cross a boundary of the native atomic unit of the " + device_->description() +
                        " (" + conf::format_size(native_atomic_unit_) + "), so atomic writes could "
                        "tear on a crash without the journal; " + fix);
}

void Server::start(bool log_stats) {
  log_stats_ = log_stats;
  next_stats_ = std::chrono::steady_clock::now() + config_.stats.interval;
  if (!readonly()) path_->start_background();
  ticker_.start(std::chrono::seconds(1), [this] { tick(); });
}

// About once a second, in the ticker thread. Never throws (PeriodicThread's contract).
void Server::tick() {
  try {
    if (!readonly()) {
      try {
        check_backing(true);
      } catch (const IoError&) {
        // Logged once by check_backing; requests fail from now on.
      }
    }
    if (!stats_file_ && !log_stats_) return;
    if (std::chrono::steady_clock::now() < next_stats_) return;
    next_stats_ = std::chrono::steady_clock::now() + config_.stats.interval;
    const CacheCounters c = counters();
    if (stats_file_) stats_file_->append(c, false);
    if (log_stats_) log_info("stats: " + c.to_string());
  } catch (const std::exception& e) {
    tick_errors_.warn("periodic check", std::string("periodic check failed: ") + e.what());
  } catch (...) {
    tick_errors_.warn("periodic check", "periodic check failed");
  }
}

void Server::check_backing(bool probe_now) {
  if (probe_now && !backing_changed_.load(std::memory_order_acquire)) {
    const uint64_t now = device_->size_on_disk();
    if (now != device_->size()) {
      std::call_once(backing_changed_logged_, [&] {
        backing_changed_message_ =
            "the " + device_->description() + " changed size behind the server (served " +
            std::to_string(device_->size()) + " bytes, it now has " + std::to_string(now) +
            "); refusing writes: changing the backing while untorn serves it is not "
            "supported (stop untorn, fix it or set backing.size, and start it again)";
        log_warning(backing_changed_message_);
        backing_changed_.store(true, std::memory_order_release);
      });
    }
  }
  if (backing_changed_.load(std::memory_order_acquire)) throw IoError(EIO, backing_changed_message_);
}

CacheCounters Server::counters() {
  CacheCounters c = path_->counters();
  c.journal_commits = journal_ ? journal_->commits() : 0;
  const AtomicWriter::Stats w = writer_->stats();
  c.device_syncs = w.device_syncs;
  c.shared_syncs = w.shared_syncs;
  c.durable_writes = w.durable_writes;
  return c;
}

void Server::shutdown() {
  ticker_.stop();
  const uint64_t dirty = path_->counters().dirty_bytes;
  if (dirty > 0)
    log_info("shutdown: writing back " + conf::format_size(dirty) + " of dirty data and syncing");
  try {
    path_->shutdown();
    if (dirty > 0) log_info("shutdown: everything written back and synced");
  } catch (const std::exception& e) {
    log_warning(std::string("shutdown: could not write everything back: ") + e.what());
  }
  const CacheCounters c = counters();
  if (stats_file_) stats_file_->append(c, true);
  if (log_stats_) log_info("stats at exit: " + c.to_string());
}

uint32_t Server::preferred_block_size() const {
  return std::max<uint32_t>(config_.device.atomic_write_unit_max, 4096);
}

}  // namespace untorn
