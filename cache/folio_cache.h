// cache/folio_cache.h — the folio index and the memory budget.
//
// Owns every Folio (through shared_ptr: the index holds one reference; users outside a
// range they hold, such as writeback's I/O, hold more while they work on one). Folios
// never overlap. The index is sharded by folio_max region (a folio lies inside one
// region, since it is naturally aligned and no larger), each shard a mutex over an
// ordered map and the set of its dirty folios; each region has a table of its blocks
// (the folio holding each), reached through a directory whose chunks are made under one
// mutex of their own (rarely: once per 512 regions). Lock order: shard mutex, then a
// folio's mutex; never the reverse. A RangeLock::try_lock may be taken under a shard
// mutex (it never waits).
// Lookups without a lock (find_held): a caller holding a range in the RangeLock may look a
// folio up there with no mutex and no reference, because
//   - a folio leaves the index only while its whole range is held exclusive (eviction
//     takes it with try_lock; drop_if_clean's caller shows its guard), and
//   - a region's block table is freed only while the region's whole range is held
//     exclusive (an empty region waits for that in its shard's list of empty regions);
// so neither can go while the caller's hold overlaps it. The tables and directory are
// atomics, written (release) under the shard mutex (a chunk pointer under the chunks'
// mutex) and read with acquire.
// Memory: every folio's memory_cost() is charged while it is in the index. Eviction is
// CLOCK over the shards (a hit sets `referenced`; the hand clears it and evicts folios
// found unreferenced), and only evicts folios that are clean (no dirty or writeback
// block) and unused (no reference but the index's, no range held over it). New folios
// start unreferenced, so a single pass of a big read does not push out the hot set.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "cache/cache_stats.h"
#include "cache/folio.h"
#include "cache/range_lock.h"

namespace untorn {

class FolioCache {
 public:
  using Ref = std::shared_ptr<Folio>;

  // block_size: the cache block (max of L and the device's io_align); folio_max: the
  // largest folio; budget: cache.size in bytes; locks: the range lock every request path
  // over this cache holds its ranges in (it must outlive the cache).
  FolioCache(uint64_t device_size, uint32_t block_size, uint64_t folio_max, uint64_t budget,
             CacheStats& stats, RangeLock& locks);

  uint32_t block_size() const { return block_; }
  uint64_t folio_max() const { return folio_max_; }
  uint64_t budget() const { return budget_; }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t folio_count() const { return folios_.load(std::memory_order_relaxed); }

  // The folio holding `offset`, or null. `touch`: count it as a hit for CLOCK.
  Ref find(uint64_t offset, bool touch = true);
  // The same with no mutex and no reference taken (the hit path): the caller holds a
  // range covering `offset` in the RangeLock, in either mode, and uses the folio only
  // while it holds it (see the top of this file).
  Folio* find_held(uint64_t offset, bool touch = true) const;
  // The offset of the first folio starting in (offset, limit), or limit.
  uint64_t next_folio(uint64_t offset, uint64_t limit);
  // The folio holding `offset`; when there is none, a new one (no block uptodate) as large
  // as allowed: at most folio_max, naturally aligned, inside [lo, hi) (block aligned, and
  // lo <= offset < hi) and overlapping no other folio. Two callers racing for the same
  // place get the same folio. *created says whether this call made it.
  Ref find_or_create(uint64_t offset, uint64_t lo, uint64_t hi, bool* created);
  // Drops `folio` from the index if it is clean and `folio` is the only other reference.
  // `held` must hold the folio's whole range exclusive (else nothing is dropped: a reader
  // may be using it through find_held).
  bool drop_if_clean(Ref& folio, const RangeLock::Guard& held);
  // Frees the block tables of empty regions that no range is held over (a region that a
  // range the caller holds overlaps stays listed). Cheap when there are none.
  void reclaim_empty_regions();
  size_t empty_regions() const { return empty_regions_.load(std::memory_order_relaxed); }

  // Dirty tracking: call mark_dirty after a folio gained dirty blocks (every time: a
  // folio already listed costs one atomic load), mark_clean after it may have lost its
  // last ones (it re-checks under the locks). A folio stays listed while any block is
  // dirty or under writeback: block status finds data not yet on the device there (E1),
  // including a group collected for writeback whose device write has not begun. Listing
  // allocates nothing (it moves the folio's own listing_node), so it cannot fail.
  void mark_dirty(Folio& folio) noexcept;
  void mark_clean(Folio& folio);
  // Offsets of dirty folios, in shard order, starting after the shard cursor `*cursor`
  // (updated), at most `max` of them.
  std::vector<uint64_t> dirty_offsets(size_t max, size_t* cursor);
  // Every dirty folio offset (for flush), ascending within each shard.
  std::vector<uint64_t> all_dirty_offsets();

  // Evicts clean, unused folios (CLOCK) until used() + bytes <= budget. Returns whether
  // it got there (false: what is left is dirty, under writeback or in use).
  bool evict_to_fit(uint64_t bytes);

  // Calls fn(Ref&) for each folio overlapping [lo, hi), ascending, with no lock of the
  // cache held during the call (fn gets the walk's own reference and may give it away,
  // to drop_if_clean say) (a folio's mutex may be held across a device read;
  // the shard's other folios must not wait for it); stops when fn returns false.
  // Allocates nothing. A folio created or dropped meanwhile may be seen or not.
  template <typename Fn>
  void for_each_folio(uint64_t lo, uint64_t hi, Fn&& fn) {
    for (uint64_t pos = lo; pos < hi;) {
      Ref f = find(pos, false);
      if (!f) {
        pos = next_folio(pos, hi);
        continue;
      }
      pos = f->end();
      if (!fn(f)) return;
    }
  }
  // Whether a block of [offset, offset+length) held by a folio has `bit` set (each
  // folio's bits read under its mutex). Allocates nothing.
  bool any_block(uint64_t offset, uint64_t length, Folio::Bit bit);
  // Every folio on a dirty list (dirty or under writeback) overlapping the range; cost
  // bounded by the shard count however long the range (block status over a whole image).
  std::vector<Ref> dirty_folios(uint64_t offset, uint64_t length);

 private:
  static constexpr size_t kShards = 256;
  // The folios of one folio_max region, block by block: lookups are a directory step and
  // one index, not a tree walk (the tree walk was a quarter of the 4K write path).
  struct Region {
    // Per block: the folio holding it (owned by the shard's `folios`), or null.
    std::unique_ptr<std::atomic<Folio*>[]> slots;
    size_t folios = 0;
  };
  // The directory: region number -> its Region's block table, in chunks of kChunk
  // regions made on first use and kept until the cache goes (8 bytes a region; 4 KiB per
  // GiB of device touched at the default folio_max).
  static constexpr size_t kChunk = 512;
  struct DirectoryChunk {
    std::array<std::atomic<std::atomic<Folio*>*>, kChunk> tables{};
  };
  struct Shard {
    std::mutex mutex;
    std::map<uint64_t, Ref> folios;  // by offset: ordered walks (next_folio, CLOCK)
    std::unordered_map<uint64_t, Region> regions;  // by region number: owns the tables
    std::vector<uint64_t> empty_regions;  // region numbers whose last folio left
    std::set<uint64_t> dirty;        // offsets of folios with dirty blocks
    uint64_t hand = 0;               // CLOCK position (an offset) in this shard
  };
  Shard& shard_for(uint64_t offset) { return shards_[(offset / folio_max_) % kShards]; }
  Ref lookup_locked(Shard& s, uint64_t offset);
  // The region of `offset` (made, and published in the directory, if new). Allocates
  // before anything changes.
  Region& region_locked(Shard& s, uint64_t offset);
  // Frees the tables of `s`'s empty regions that try_lock can hold whole.
  void reclaim_locked(Shard& s);
  bool overlaps_locked(Shard& s, uint64_t begin, uint64_t end);
  // Adds / removes a folio to / from both views and the memory count. unindex_locked moves
  // the index's reference to `released`, which the caller declares before taking the shard
  // mutex: a folio's memory goes back (munmap, madvise) after the mutex, not under it.
  void index_locked(Shard& s, const Ref& f);
  std::map<uint64_t, Ref>::iterator unindex_locked(Shard& s, std::map<uint64_t, Ref>::iterator it,
                                                    std::vector<Ref>& released);
  // Examines up to `budget` folios of shard `s` from its hand; returns bytes evicted.
  uint64_t sweep(Shard& s, size_t budget, uint64_t want);

  const uint64_t device_size_;
  const uint32_t block_;
  const uint64_t folio_max_;
  const uint64_t budget_;
  CacheStats& stats_;
  RangeLock& locks_;
  std::unique_ptr<std::atomic<DirectoryChunk*>[]> directory_;
  std::mutex chunks_mutex_;  // guards chunks_ (the directory's owner)
  std::vector<std::unique_ptr<DirectoryChunk>> chunks_;
  std::atomic<size_t> empty_regions_{0};
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> folios_{0};
  std::atomic<size_t> clock_shard_{0};
  std::array<Shard, kShards> shards_;
};

}  // namespace untorn
