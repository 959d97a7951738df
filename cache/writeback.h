// cache/writeback.h — writing dirty folios back to the device, group by group.
//
// Holds references to the FolioCache, the RangeLock, the AtomicWriter and the stats,
// which outlive it; owns the background threads (started after nbdkit forks, joined in
// stop()). A joined group (DESIGN.md §4) is the run of dirty blocks tied by `joined`
// bits, possibly across folios; it is always written as one crash-atomic operation
// (AtomicWriter: in place, RWF_ATOMIC or the journal). Groups are combined only into
// in-place writes of groups that are each in place on their own (so each stays whole),
// and many groups share one journal commit and one device batch (write_batch).
// Collecting: under the range lock (shared, so no request is half copied in) and the
// collector mutex (so two collectors never take the same group), a group whose blocks
// are all dirty moves dirty -> writeback; its bytes then stay stable (writers wait for
// writeback to clear) and the I/O runs with no lock held. Success clears writeback (and
// the group bits); failure turns the blocks dirty again with their groups intact, and
// every flush() running or next to start fails with EIO (R1), even when a request waiting
// for that write-through got the error too (a flush may have passed the groups by while
// they were under writeback). A batch never submitted (memory ran out while collecting
// it) gives its groups back the same way and fails the flushes too; one that runs out of
// memory before or during its I/O completes as a failed write. So an exception never
// leaves a taken group under writeback (test: WritebackAbandonTest).
// dirty_bytes() counts blocks dirty or under writeback. Lock order: range lock, collector
// mutex, shard mutex, folio mutex, state mutex; an extent map shard mutex (ExtentMap) is a
// leaf, taken under any of them and never held while taking another. (FolioCache's
// eviction try_locks ranges under a shard mutex: a try never waits.)
#pragma once

#include <chrono>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cache/cache_stats.h"
#include "cache/folio_cache.h"
#include "cache/race_hooks.h"
#include "cache/range_lock.h"
#include "device/aligned_buffer.h"
#include "device/atomic_writer.h"
#include "util/rate_limited_log.h"

namespace untorn {

struct WritebackOptions {
  uint32_t atomic_write_unit_max = 64 * 1024;  // A: no group is larger
  uint64_t background_bytes = 0;  // background writeback starts above this much dirty
  uint64_t dirty_limit = 0;       // writers wait above this much dirty
  std::chrono::milliseconds expire{5000};  // and dirty data older than this is written
  uint64_t batch_bytes = uint64_t{16} << 20;  // per device batch
  unsigned threads = 2;
};

class Writeback {
 public:
  Writeback(FolioCache& cache, RangeLock& locks, AtomicWriter& writer, CacheStats& stats,
            WritebackOptions options);
  ~Writeback();
  Writeback(const Writeback&) = delete;
  Writeback& operator=(const Writeback&) = delete;

  // Background threads.
  void start();
  void stop();

  // Acquire: ordered after the device writes of every group counted off before it (block
  // status relies on that; on x86 a plain load).
  uint64_t dirty_bytes() const { return dirty_bytes_.load(std::memory_order_acquire); }
  // Requests report blocks that turned dirty (positive) or were dropped dirty (negative).
  void add_dirty(int64_t bytes);
  const WritebackOptions& options() const { return options_; }

  // Writes every dirty group touching [lo, hi) now, in this thread (durably with `fua`).
  // The caller holds every such group exclusive in the range lock ([lo - A, hi + A) is
  // always enough). Throws IoError if a group failed (it stays dirty). `dropped`: on
  // failure the caller drops the range from the cache (writethrough, uncached), so
  // nothing is left dirty for a flush to fail on.
  void write_range(uint64_t lo, uint64_t hi, bool fua, bool dropped = false);
  // Waits until no block of [begin, end) is under writeback. The caller holds the range
  // exclusive (so none can start).
  void wait_idle(uint64_t begin, uint64_t end);
#ifdef UNTORN_TEST_HOOKS
  void set_race_hooks(RaceHooks* hooks) { hooks_ = hooks; }
#endif
  // Writes back up to max_bytes of dirty groups; the caller holds no range lock. With
  // expired_only, only folios dirty for longer than options.expire. Returns the bytes
  // written; throws IoError if any failed.
  uint64_t write_some(uint64_t max_bytes, bool expired_only);
  // Writes back everything dirty, waits for writeback already running, and throws EIO if
  // any writeback failed since the last flush (R1). Durability is the caller's next step.
  void flush();
  // balance_dirty_pages: above the dirty limit, the caller writes back (or waits for the
  // writeback threads) until below it. Throws IoError when writeback is failing.
  void throttle();
  // Waits for some writeback batch to finish; false at once if none is running.
  bool wait_for_progress();
  // For a request short of memory or over the dirty limit: waits for a running batch, or
  // with none running writes one itself. False when nothing is running or left to take.
  bool help_or_wait();

 private:
  struct Piece {
    FolioCache::Ref folio;
    size_t first, count;  // blocks
  };
  struct Op {
    uint64_t offset = 0, length = 0;
    bool atomic = false;
    std::vector<Piece> pieces;
    AlignedBuffer bounce;  // for groups spanning folios
  };
  // One group starting at block `i` of `f`: its pieces; false if not all of it is dirty.
  bool gather_group(const FolioCache::Ref& f, size_t i, std::vector<Piece>& pieces);
  // The first block of the group holding block `i` of `f` (null if it cannot be found
  // within A, i.e. there is no whole group).
  std::pair<FolioCache::Ref, size_t> group_start(FolioCache::Ref f, size_t i);
  // Takes every whole dirty group touching [lo, hi) (the caller holds [lo - A, hi + A)).
  uint64_t collect(uint64_t lo, uint64_t hi, uint64_t max_bytes, bool expired_only,
                   std::vector<Op>& ops);
  // The op for one group (and its bounce buffer when it spans folios): all the
  // allocation of taking a group, done before the group is taken.
  Op make_op(std::vector<Piece> pieces, bool atomic) const;
  // Appends `op` to `ops`, or merges it into the last op (see the .cc); allocates nothing
  // when `ops` has room for one more.
  void add_op(std::vector<Op>& ops, Op op);
  // Gives back the groups of a batch that will not be submitted (an allocation failed
  // while collecting it): writeback -> dirty, groups intact; records the failure for the
  // flushes unless `dropped` (see write_range); then ends batch `seq`.
  void abandon(std::vector<Op>& ops, uint64_t seq, bool dropped = false) noexcept;
  // Writes ops (registered as batch `seq`) and completes them; throws on failure. A
  // failure also fails the flushes running or next to start (the groups are dirty again),
  // unless `dropped`: the caller drops the failed range from the cache at once.
  void submit(std::vector<Op>& ops, uint64_t seq, bool fua, bool dropped = false);
  // Takes the range lock for collecting from `f` into `ops` (batch *seq): when it is
  // held by someone else, the ops collected so far are submitted first (a writer holding
  // it may be waiting for them), and a new batch begins.
  RangeLock::Guard lock_for_collect(const Folio& f, std::vector<Op>& ops, uint64_t* seq);
  uint64_t begin_batch();
  void end_batch(uint64_t seq);
  // Waits on progress_ (lk holds state_mutex_) until `done`, counted in progress_waiters_
  // (end_batch notifies only when someone waits).
  void wait_progress(std::unique_lock<std::mutex>& lk, const std::function<bool()>& done);
  // Counts a failure for the flushes to report (R1); the message is best effort.
  void record_error(std::string_view message) noexcept;
  // The message for a batch that failed as a whole (`failure` is not null).
  static std::string describe(const std::exception_ptr& failure);
  void thread_main(unsigned index);

  FolioCache& cache_;
  RangeLock& locks_;
  AtomicWriter& writer_;
  CacheStats& stats_;
  const WritebackOptions options_;
  const uint32_t block_;
  std::atomic<uint64_t> dirty_bytes_{0};
  std::atomic<bool> running_{false};  // background threads started (read by writers)
  std::atomic<size_t> batches_running_{0};  // in_flight_.size(), readable without the lock

  std::mutex collector_mutex_;

  std::mutex state_mutex_;
  std::condition_variable progress_;   // a batch finished (notified only with waiters)
  unsigned progress_waiters_ = 0;      // threads waiting on progress_
  std::condition_variable work_;       // the writeback threads: work arrived, or stop
  std::multiset<uint64_t> in_flight_;  // batch sequence numbers
  uint64_t next_seq_ = 1;
  // Batches ended; changed under the mutex, readable without it (wait_idle samples it
  // before looking at the folios: a batch clearing writeback counts itself afterwards).
  std::atomic<uint64_t> completions_{0};
  // Writeback failures no request took itself: counted, and every flush that began
  // before a failed one was reported fails with it. (One message consumed by the first
  // flush to look let a concurrent flush succeed with the data still dirty: D1, found by
  // the fault soak.)
  uint64_t failures_ = 0;
  uint64_t reported_upto_ = 0;         // failures_ when a flush last failed
  std::string last_error_;
  bool stopping_ = false;
  bool kicked_ = false;
  // "writeback failed" while the device keeps failing: once per 10 s, with a count.
  RateLimitedLog failure_log_;
  std::vector<std::thread> threads_;
#ifdef UNTORN_TEST_HOOKS
  RaceHooks* hooks_ = nullptr;
#endif
};

}  // namespace untorn
