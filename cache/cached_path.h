// cache/cached_path.h — the request paths with the folio cache: writeback, writethrough
// and uncached (DESIGN.md §3).
//
// Owns the FolioCache, the RangeLock, the Writeback engine and the stats; holds
// references to the BlockDevice and AtomicWriter, which must outlive it.
// Every request works in cache blocks of G = max(L, device io_align):
//   - writes hold their block range exclusive for the whole copy-in (so the copy is all or
//     nothing for readers and for writeback: A1, DESIGN.md §4), after waiting for writeback
//     of those blocks to finish (stable bytes, and no older write lands after a newer one:
//     T1). A dirty group that sticks out of the range is written back first, under a lock
//     widened by A, so no group is ever larger than A nor torn by a later write.
//     An atomic-eligible write becomes one joined group;
//   - reads hold their range shared; blocks not uptodate are read from the device into
//     the folio (cache.populate_on_read) or straight to the client;
//   - writethrough, uncached and FUA write their range through before replying (uncached
//     then drops the folios it created); FLUSH writes back everything dirty and syncs;
//   - large zeroes and trims go to the device after the cached blocks' groups are settled,
//     then the cached blocks are dropped; small eligible zeroes are cached writes of zeroes.
// Memory is reserved before any lock is taken (make_room evicts clean folios, writes back
// or waits), and writers are throttled at cache.dirty_ratio before too.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <vector>

#include "cache/cache_stats.h"
#include "cache/folio_cache.h"
#include "cache/range_lock.h"
#include "cache/request_path.h"
#include "cache/writeback.h"
#include "conf/config.h"
#include "device/atomic_writer.h"

namespace untorn {

class CachedPath final : public RequestPath {
 public:
  CachedPath(BlockDevice& device, AtomicWriter& writer, const Config::Cache& config,
             uint32_t logical_block_size, uint32_t atomic_write_unit_max);
  ~CachedPath() override;

  // Background writeback (nbdkit's after_fork, or a test). `tick` runs about once a second.
  void start_background(std::function<void()> tick = {});
  // Writes everything back and syncs, then stops the background threads. Throws on error.
  void shutdown();

  uint64_t size() const override { return device_.size(); }
  void read(uint64_t offset, std::span<std::byte> dst) override;
  void write(uint64_t offset, std::span<const std::byte> src, bool fua) override;
  void zero(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) override;
  void trim(uint64_t offset, uint64_t length, bool fua) override;
  void flush() override;
  std::vector<Extent> extents(uint64_t offset, uint64_t length) override;
  void prefetch(uint64_t offset, uint64_t length) override;

  CacheCounters counters() const;
  CacheMode mode() const { return mode_; }
  uint32_t block_size() const { return block_; }
  FolioCache& folio_cache() { return cache_; }
  Writeback& writeback() { return writeback_; }

 private:
  uint64_t align_down(uint64_t v) const { return v / block_ * block_; }
  uint64_t align_up(uint64_t v) const { return (v + block_ - 1) / block_ * block_; }
  // A write of src (null: zeroes): throttle, reserve memory, lock, then write_locked.
  void write_request(uint64_t offset, uint64_t length, const std::byte* src, bool fua);
  // Under the exclusive lock of [lock_lo, lock_hi): settles groups sticking out of the
  // block range, copies in, and writes through when the mode or fua says so. Returns
  // false when the lock must first be widened to *lock_lo, *lock_hi.
  bool write_locked(uint64_t offset, uint64_t length, const std::byte* src, bool fua,
                    uint64_t* lock_lo, uint64_t* lock_hi);
  // Groups that cross the edges of block range [b0, b1): written back. Returns false if
  // the lock [lock_lo, lock_hi) must first be widened.
  bool settle_edges(uint64_t b0, uint64_t b1, uint64_t* lock_lo, uint64_t* lock_hi);
  bool crosses(uint64_t boundary);
  // Copies into folios (creating them inside [b0, b1)); returns the folios it created.
  std::vector<FolioCache::Ref> copy_in(uint64_t offset, uint64_t length, const std::byte* src,
                                       bool atomic);
  // Drops [b0, b1) from the cache (dirty data too): after the device has it or after a
  // failed writethrough.
  void invalidate(uint64_t b0, uint64_t b1);
  // Makes the blocks of [b0, b1) uptodate in the cache, copying [offset, offset+dst) out.
  // The caller holds [b0, b1) shared. Returns whether the part up to offset+dst needed the
  // device (blocks past it are read-ahead).
  bool fill(uint64_t b0, uint64_t b1, uint64_t offset, std::span<std::byte> dst, bool populate);
  void zero_range(uint64_t offset, uint64_t length, ZeroOptions options, bool fua);
  void make_room(uint64_t bytes);
  uint64_t readahead_end(uint64_t offset, uint64_t length);
  uint64_t widen_lo(uint64_t v) const { return v > atomic_write_unit_max_ ? v - atomic_write_unit_max_ : 0; }
  uint64_t widen_hi(uint64_t v) const { return std::min(size(), v + atomic_write_unit_max_); }

  BlockDevice& device_;
  AtomicWriter& writer_;
  const CacheMode mode_;
  const bool populate_on_read_;
  const uint32_t logical_block_size_;
  const uint32_t atomic_write_unit_max_;
  const uint32_t block_;
  const uint64_t readahead_max_;
  CacheStats stats_;
  FolioCache cache_;
  RangeLock locks_;
  Writeback writeback_;
  std::array<std::atomic<uint64_t>, 8> stream_ends_{};  // sequential read detection
  std::atomic<size_t> stream_slot_{0};
};

}  // namespace untorn
