// cache/cached_path.h — the request paths with the folio cache: writeback, writethrough
// and uncached (DESIGN.md §3).
//
// Owns the FolioCache, the RangeLock, the Writeback engine and the stats; holds
// references to the MappedDevice (and through it the ExtentMap) and the AtomicWriter,
// which must outlive it; the writer must write through that MappedDevice, so every change
// of the device's allocation reaches the map (the constructor checks).
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
//     then drops the folios it created; an uncached write of whole blocks with no folio
//     in its range skips the cache and goes to the writer as it came); FLUSH writes back
//     everything dirty and syncs;
//   - large zeroes and trims go to the device after the cached blocks' groups are settled,
//     then the cached blocks are dropped; small eligible zeroes are cached writes of zeroes.
// The extent map (DESIGN.md §5) answers block status with no syscall when warm, lets a
// read miss over a hole zero-fill instead of reading, and lets a zero or trim of a range
// that already reads as zeroes skip the device. Each use revalidates its mapping after
// the lock or wait that follows it (revalidation points (1)-(3), at their code, each with
// its test); (4), writeback against a later trim, is closed by waiting for writeback.
// Memory is reserved before any lock is taken (make_room evicts clean folios, writes back
// or waits), and writers are throttled at cache.dirty_ratio before too.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <vector>

#include "cache/cache_stats.h"
#include "cache/extent_map.h"
#include "cache/folio_cache.h"
#include "cache/mapped_device.h"
#include "cache/race_hooks.h"
#include "cache/range_lock.h"
#include "cache/request_path.h"
#include "cache/writeback.h"
#include "conf/config.h"
#include "device/atomic_writer.h"

namespace untorn {

class CachedPath final : public RequestPath {
 public:
  CachedPath(MappedDevice& device, ExtentMap& map, AtomicWriter& writer,
             const Config::Cache& config, uint32_t logical_block_size,
             uint32_t atomic_write_unit_max);
  ~CachedPath() override;

  // Background writeback (nbdkit's after_fork, or a test).
  void start_background();
  // Writes everything back and syncs, then stops the background threads. Throws on error.
  void shutdown();

  uint64_t size() const override { return device_.size(); }
  void read(uint64_t offset, std::span<std::byte> dst) override;
  void write(uint64_t offset, std::span<const std::byte> src, bool fua) override;
  void zero(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) override;
  void trim(uint64_t offset, uint64_t length, bool fua) override;
  void flush() override;
  std::vector<Extent> extents(uint64_t offset, uint64_t length, bool req_one = false) override;
  void prefetch(uint64_t offset, uint64_t length) override;

  CacheCounters counters() const;
  CacheMode mode() const { return mode_; }
  uint32_t block_size() const { return block_; }
  FolioCache& folio_cache() { return cache_; }
  Writeback& writeback() { return writeback_; }
  ExtentMap& extent_map() { return map_; }
#ifdef UNTORN_TEST_HOOKS
  RaceHooks& race_hooks() { return hooks_; }
#endif

 private:
  uint64_t align_down(uint64_t v) const { return v / block_ * block_; }
  uint64_t align_up(uint64_t v) const { return (v + block_ - 1) / block_ * block_; }
  // A write of src (null: zeroes) over block range [b0, b1) takes three steps, after
  // Linux iomap's iterator, each one function:
  //   find    lock_for_write: [b0, b1) exclusive in the range lock (widened by up to A on
  //           each side when a group sticks out of it), its writeback finished, the
  //           groups crossing its edges written back (so the write's own group bits
  //           never split an older group);
  //   act     copy_in: the bytes into folios, their blocks uptodate, dirty and grouped;
  //   finish  finish_write: written through (writethrough, uncached, FUA) and, uncached,
  //           the folios the write created dropped.
  // write_request runs them in order, after throttling and reserving memory; an
  // uncached write that no folio overlaps replaces act and finish by one device write
  // (write_direct).
  void write_request(uint64_t offset, uint64_t length, const std::byte* src, bool fua);
  RangeLock::Guard lock_for_write(uint64_t b0, uint64_t b1);
  // Act and finish, under find's lock (or zero_range's, which is wider and settled):
  // `held`, which holds the write's blocks exclusive.
  void write_locked(uint64_t offset, uint64_t length, const std::byte* src, bool fua,
                    const RangeLock::Guard& held);
  // The uncached direct path: false (nothing done) unless it applies.
  bool write_direct(uint64_t offset, uint64_t length, const std::byte* src, bool fua, bool atomic);
  void finish_write(uint64_t b0, uint64_t b1, bool fua, std::vector<FolioCache::Ref>& created,
                    const RangeLock::Guard& held);
  // Which edges of block range [b0, b1) a dirty (or under writeback) group sticks out of.
  struct Crossing {
    bool start = false, end = false;
    bool any() const { return start || end; }
  };
  // The caller holds [b0, b1) in the range lock (and perhaps more).
  Crossing crossing(uint64_t b0, uint64_t b1);
  // Writes back the groups `c` says cross the edges of [b0, b1). The caller holds
  // [widen_lo(b0), widen_hi(b1)) exclusive: a group reaches at most A - 1 block past it.
  void settle_edges(uint64_t b0, uint64_t b1, Crossing c);
  // `holder`: a folio the caller may use (find_held), held at or before `boundary`.
  bool crosses(uint64_t boundary, Folio* holder);
  // Copies into folios (creating them inside [b0, b1)); returns the folios it created.
  std::vector<FolioCache::Ref> copy_in(uint64_t offset, uint64_t length, const std::byte* src,
                                       bool atomic);
  // Drops [b0, b1) from the cache (dirty data too): after the device has it or after a
  // failed writethrough. `held` holds [b0, b1) exclusive.
  void invalidate(uint64_t b0, uint64_t b1, const RangeLock::Guard& held) noexcept;
  // Mappings probed for a read with no lock held, to be revalidated under it.
  struct ReadMappings {
    std::vector<ExtentMap::Mapping> probed;
    bool use_map = true;  // false: read every missing block from the device
  };
  static constexpr uint64_t kFilled = UINT64_MAX;
  // Makes the blocks of [b0, b1) uptodate in the cache (populate) or copies them from the
  // device, copying [offset, offset+dst) out. The caller holds [b0, b1) shared. Returns
  // kFilled, or the offset of a missing block whose allocation must be probed first (the
  // caller drops the lock, probes, and calls again). *missed: the part up to
  // offset+dst needed the device (blocks past it are read-ahead).
  uint64_t fill(uint64_t b0, uint64_t b1, uint64_t offset, std::span<std::byte> dst, bool populate,
                ReadMappings& mappings, bool* missed);
  // The mapping at `pos` a read may act on: a probed one still valid, or what the map
  // knows; nullopt where a probe is needed first.
  std::optional<ExtentMap::Mapping> mapping_at(uint64_t pos, uint64_t limit, ReadMappings& mappings);
  // From `pos` (block aligned) under mapping `m`, up to `limit`: where the run ends and
  // whether it may be zero-filled (whole cache blocks of hole or zero).
  struct Run {
    uint64_t to;
    bool zeroes;
  };
  Run run_of(uint64_t pos, uint64_t limit, const ExtentMap::Mapping& m) const;
  // Loads device range [s, t) into `into`: what the map vouches reads as zeroes is
  // zero-filled, the rest read. Returns kFilled or where a probe is needed first.
  uint64_t load(uint64_t s, uint64_t t, std::byte* into, ReadMappings& mappings);
  // fill() under the shared range lock, probing between rounds with no lock held.
  bool fill_with_probes(uint64_t b0, uint64_t b1, uint64_t offset, std::span<std::byte> dst,
                        bool populate);
  // The extent map's mappings from `begin`, up to `end` or, with req_one, to where the
  // allocation first changes; at most max_mappings.
  std::vector<ExtentMap::Mapping> map_walk(uint64_t begin, uint64_t end, bool req_one,
                                           size_t max_mappings);
  // Dirty or under-writeback block runs in [begin, end), from the folio index.
  std::vector<std::pair<uint64_t, uint64_t>> dirty_runs(uint64_t begin, uint64_t end);
  // Whether the device range [b, e) already reads as zeroes and the zero may be skipped.
  bool already_zero(const std::vector<ExtentMap::Mapping>& mappings, uint64_t b, uint64_t e,
                    ZeroOptions options) const;
  void zero_range(uint64_t offset, uint64_t length, ZeroOptions options, bool fua);
  void make_room(uint64_t bytes);
  uint64_t readahead_end(uint64_t offset, uint64_t length);
  uint64_t widen_lo(uint64_t v) const { return v > atomic_write_unit_max_ ? v - atomic_write_unit_max_ : 0; }
  uint64_t widen_hi(uint64_t v) const { return std::min(size(), v + atomic_write_unit_max_); }

  MappedDevice& device_;
  ExtentMap& map_;
  AtomicWriter& writer_;
  const CacheMode mode_;
  const bool populate_on_read_;
  const uint32_t logical_block_size_;
  const uint32_t atomic_write_unit_max_;
  const uint32_t block_;
  const uint64_t readahead_max_;
  CacheStats stats_;
  RangeLock locks_;  // before cache_, which evicts only what no range is held over
  FolioCache cache_;
  Writeback writeback_;
  std::array<std::atomic<uint64_t>, 8> stream_ends_{};  // sequential read detection
  std::atomic<size_t> stream_slot_{0};
#ifdef UNTORN_TEST_HOOKS
  RaceHooks hooks_;
#endif
};

}  // namespace untorn
