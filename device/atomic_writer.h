// device/atomic_writer.h — the crash-atomic write operation (DESIGN.md §4, promise A2).
//
// Holds references to the BlockDevice and (unless journal.mode is never) the
// JournalWriter; both must outlive it. For each write the caller marks atomic-eligible it
// picks one crash-atomic operation:
//   1. in place, when the range lies within one aligned native atomic unit of the storage;
//   2. one RWF_ATOMIC write, when the device supports it for that range;
//   3. otherwise the journal: record committed (durable, group commit), then in place.
// Writes that are not eligible go in place. Whatever the kind, a write or zero that
// touches a range with a record in the current journal epoch goes through the journal
// too, so replay never overwrites newer data (T1; test: AtomicWriterTest.ReplayNeverClobbersNewerData).
// FUA: journaled writes are durable at commit; in-place ones are written durably
// (RWF_DSYNC) where the device offers it, else covered by a device fdatasync that
// concurrent callers share (group commit, sync_device).
// Checkpoint (on flush, and when the journal passes checkpoint_bytes): wait for
// journaled writes in flight, fdatasync the device, reset the journal.
// A failed device fdatasync fails the writer for good (DESIGN.md §4, "fsyncgate"): the
// kernel may have dropped the pages it could not write while marking them clean, so no
// later sync could vouch for them. A failed durable in-place write counts as one (on RBD
// a blocklisted, fenced server meets it at its first FUA or writethrough write; a failed
// journal commit or background writeback fails its own request or flush instead, which a
// fenced server keeps meeting). From then on every write, zero and flush fails with
// EIO naming the first failure, and the journal is never reset again: its records stay
// for recovery at the next start, which writes them in place again and syncs (tests:
// AtomicWriterTest.FailedDeviceSyncNeverResetsTheJournal and the fault soak).
// Thread-safe; the caller (cache/DirectPath) keeps overlapping requests apart with its
// range lock, which this class relies on.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>
#include <span>
#include <string>

#include "conf/config.h"
#include "device/block_device.h"
#include "device/journal_writer.h"

namespace untorn {

struct AtomicWriterOptions {
  uint32_t atomic_write_unit_max = 64 * 1024;
  uint64_t native_atomic_unit = 512;  // resolved: never 0
  JournalMode mode = JournalMode::automatic;
  uint64_t checkpoint_bytes = uint64_t{64} << 20;
  // Test-only negative controls (never set by a user config; see README "Testing"):
  bool unsafe_bypass_journal = false;   // act as if every write were safe in place
  uint32_t unsafe_split_writes = 0;     // issue in-place writes in pieces of this size, one after another
  // Test-only crash point: after this many journal commits (records durable), the process
  // SIGKILLs itself before writing them in place: recovery of journal-only records on
  // real storage (0: never).
  uint64_t kill_after_journal_commits = 0;
};

class AtomicWriter {
 public:
  enum class Method { in_place, rwf_atomic, journal };

  // `journal` may be null only when options.mode is never.
  AtomicWriter(BlockDevice& device, JournalWriter* journal, AtomicWriterOptions options);

  // Writes `data` at `offset` (aligned to the device's io_align). When it returns the
  // write is visible; with `fua` it is also durable (D2).
  Method write(uint64_t offset, std::span<const std::byte> data, bool atomic, bool fua);
  // One write of write_batch; method, error and message are filled in.
  struct BatchWrite {
    uint64_t offset = 0;
    std::span<const std::byte> data;
    bool atomic = false;    // must be one crash-atomic operation
    Method method = Method::in_place;
    int error = 0;
    std::string message;
  };
  // Writes many disjoint ranges, each as write() would (not durable), sharing work: every
  // journaled one goes into one journal commit (one fdatasync), then all in-place writes
  // go to the device as one batch. Never throws for a failed write; see its error. With
  // `fua` every write that succeeded is durable on return (a failed sync throws): in-place
  // writes as durable device writes where the device has them (RWF_DSYNC), otherwise by
  // one device sync shared with concurrent callers (group commit).
  void write_batch(std::span<BatchWrite> writes, bool fua = false);

  // Zeroes a range (aligned to io_align). `atomic`: an eligible WRITE_ZEROES.
  Method zero(uint64_t offset, uint64_t length, ZeroOptions options, bool atomic, bool fua);
  // D1: everything completed before the call is durable when it returns.
  void flush();

  // What an operation on this range would use (tests, stats). `is_zero`: a WRITE_ZEROES,
  // which fallocate applies and RWF_ATOMIC cannot carry.
  Method method_for(uint64_t offset, uint64_t length, bool atomic, bool is_zero = false) const;

  // Whether a record of the current epoch covers part of the range (replay would write it).
  bool overlaps_journaled(uint64_t offset, uint64_t length) const;
  // The device every write goes to.
  BlockDevice& device() const { return device_; }
  // Whether a device sync has failed (see the top); then throws IoError(EIO) saying so.
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  void throw_if_failed() const;

  struct Stats {
    uint64_t in_place = 0, rwf_atomic = 0, journaled = 0, checkpoints = 0;
    uint64_t checkpoint_waits = 0;  // callers that found a checkpoint running and waited
    uint64_t device_syncs = 0;      // fdatasyncs of the backing file run
    uint64_t shared_syncs = 0;      // sync requests answered by another caller's fdatasync
    uint64_t sync_waits = 0;        // sync requests that found one running and waited
    uint64_t durable_writes = 0;    // FUA in-place writes made durable by the device (RWF_DSYNC)
  };
  Stats stats() const;

 private:
  bool fits_native_unit(uint64_t offset, uint64_t length) const;
  void mark_journaled(uint64_t offset, uint64_t length);
  // The device part of write_batch for writes without an error: in place (one device
  // batch) or RWF_ATOMIC; records each write's outcome.
  void write_out(std::span<BatchWrite> writes, bool durable);
  // Appends the device writes for `data` at `offset` to `out` (split when a test asks),
  // each `durable` as asked.
  void add_in_place(std::vector<WriteRequest>& out, uint64_t offset,
                    std::span<const std::byte> data, bool durable) const;
  // While one lives, journaled writes are in flight and a checkpoint waits for them.
  class JournalGate {
   public:
    explicit JournalGate(AtomicWriter& w);
    ~JournalGate();
    JournalGate(const JournalGate&) = delete;
    JournalGate& operator=(const JournalGate&) = delete;

   private:
    AtomicWriter& w_;
  };
  void journaled_zero(uint64_t offset, uint64_t length, ZeroOptions zero_options);
  // for_flush: the caller needs everything completed before the call durable, so a
  // checkpoint already running (whose fdatasync may have begun before some of those
  // writes completed) is waited for and then one more is run (D1; test:
  // AtomicWriterTest.FlushDuringCheckpointSyncsAgain).
  void checkpoint(bool for_flush);
  // Counts one completed write of method m (`durable`: made durable by the device).
  void count(Method m, bool durable);
  // Makes everything completed before the call durable: device_.sync(), failing the
  // writer for good if it fails. Group commit: callers arriving while a sync runs share
  // the next one, which one of them runs; syncs never overlap (see the .cc).
  void sync_device();
  // Fences the writer (see the top) and logs that `what` failed: every later write, zero
  // and flush fails with EIO naming the first `failure`.
  void fail_for_good(const char* what, const std::string& failure);
  // options_.kill_after_journal_commits: counts a commit whose records are durable.
  void after_journal_commit();

  BlockDevice& device_;
  JournalWriter* journal_;
  AtomicWriterOptions options_;

  mutable std::mutex ranges_mutex_;
  std::map<uint64_t, uint64_t> journaled_ranges_;  // start -> end, current epoch

  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_cv_;
  int journaled_in_flight_ = 0;
  bool checkpointing_ = false;

  mutable std::mutex stats_mutex_;
  Stats stats_;

  // Device syncs, one at a time (see sync_device). Generation n is the n-th sync started;
  // a caller needs one that started after it arrived. One runs while started != finished.
  std::mutex sync_mutex_;
  std::condition_variable sync_done_;
  uint64_t syncs_started_ = 0;
  uint64_t syncs_finished_ = 0;
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> test_commits_{0};  // for options_.kill_after_journal_commits
  mutable std::mutex failure_mutex_;
  std::string failure_;  // what failed first, and its message
};

}  // namespace untorn
