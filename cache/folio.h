// cache/folio.h — one cache unit: a naturally aligned, power-of-two run of blocks.
//
// Owns its page-aligned data (from FolioMemory; usable for O_DIRECT as it is) and five per-block bitmaps:
//   uptodate  the block's bytes are the device's current contents (or newer);
//   dirty     newer than the device, waiting for writeback (implies uptodate);
//   writeback being written to the device now; never also dirty; its bytes are stable:
//             writers wait for it to clear (like the kernel's stable pages);
//   joined    "joined to the previous block": both belong to one atomic-eligible write,
//             so writeback writes them in one crash-atomic operation (DESIGN.md §4). The
//             first block of a folio may be joined to the last block of the folio before;
//   atomic    the block belongs to an atomic-eligible write (one-block groups need it).
// Invariants: offset % size == 0; size is a power of two, a multiple of the block size.
// The bitmaps and dirtied_at are changed under mutex(); the data bytes are guarded by the
// cache's range lock (writers exclusive, readers and writeback shared) plus, for filling
// blocks that are not uptodate, mutex(). A reader holding a block's range may also ask
// whether it is uptodate without mutex() (uptodate_unlocked): a block turns uptodate only
// after its bytes are in place (release, paired with that check's acquire), and stops
// being uptodate, or has its bytes changed, only under an exclusive hold of its range. joined/atomic bits of dirty or writeback blocks never change
// while they are under writeback, so a failed writeback restores the groups exactly.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <span>

#include "cache/folio_memory.h"

namespace untorn {

class alignas(64) Folio : public std::enable_shared_from_this<Folio> {
 public:
  enum Bit { uptodate = 0, dirty, writeback, joined, atomic, kBits };

  Folio(uint64_t offset, uint32_t size, uint32_t block_size);
  Folio(const Folio&) = delete;
  Folio& operator=(const Folio&) = delete;

  uint64_t offset() const { return offset_; }
  uint64_t end() const { return offset_ + size_; }
  uint32_t size() const { return size_; }
  uint32_t block_size() const { return block_; }
  size_t blocks() const { return size_ / block_; }
  // Index of the block holding device offset `at` (which must lie in this folio).
  size_t block_of(uint64_t at) const { return static_cast<size_t>((at - offset_) / block_); }
  uint64_t block_offset(size_t i) const { return offset_ + uint64_t{i} * block_; }
  std::byte* data() { return data_.get(); }
  std::byte* block_data(size_t i) { return data_.get() + size_t{i} * block_; }
  // Bytes this folio costs the memory budget: data, bitmaps and bookkeeping.
  uint64_t memory_cost() const;

  std::mutex& mutex() { return mutex_; }
  // The caller holds mutex(). Ranges are block indexes [b, e).
  bool test(Bit bit, size_t i) const { return (word(bit, i) >> (i % 64)) & 1; }
  void set(Bit bit, size_t b, size_t e, bool value);
  bool all(Bit bit, size_t b, size_t e) const;
  bool any(Bit bit, size_t b, size_t e) const;
  size_t count(Bit bit, size_t b, size_t e) const;
  // First block i in [b, e) with `bit` set, or e.
  size_t find(Bit bit, size_t b, size_t e) const;
  // Whether blocks [b, e) are all uptodate, without mutex(): for a reader holding their
  // range in the cache's range lock (see above). Cheap when the whole folio is.
  bool uptodate_unlocked(size_t b, size_t e) const;
  size_t dirty_blocks() const { return dirty_blocks_; }
  size_t writeback_blocks() const { return writeback_blocks_; }
 private:
  uint64_t word(Bit bit, size_t i) const {
    return bits_[bit * words_ + i / 64].load(std::memory_order_relaxed);
  }

  // What a hit reads comes first, in one cache line (the object's first 64 bytes, after
  // enable_shared_from_this): where the folio is, its data, whether all of it is uptodate
  // and the CLOCK bit.
  const uint64_t offset_;
  const uint32_t size_;
  const uint32_t block_;
  const size_t words_;  // per bitmap
  FolioMemory::Block data_;
  // Set (release) while every block is uptodate: a hit on a whole cached folio reads this
  // line only, not the bitmaps.
  std::atomic<bool> all_uptodate_{false};

 public:
  // CLOCK: set on every hit, cleared by the eviction hand.
  std::atomic<bool> referenced{false};

  // Set when the folio went from clean to dirty (for cache.dirty_expire).
  std::chrono::steady_clock::time_point dirtied_at;

  // Whether the folio is on its shard's dirty list. Changed under the shard mutex and
  // (to false) also under mutex(); a writer that set dirty bits and then reads true knows
  // the folio stays listed until those bits are written back.
  std::atomic<bool> listed_dirty{false};
  // The node of its shard's dirty list that lists this folio: made with the folio, held
  // here while the folio is not listed, in the list while it is (moved under the shard
  // mutex). So listing allocates nothing and cannot fail (an allocation failure there
  // once left dirty blocks unlisted, invisible to flushes: D1).
  std::set<uint64_t>::node_type listing_node;

 private:
  std::mutex mutex_;
  // Atomic words so that uptodate_unlocked may read them; every change is under mutex().
  std::unique_ptr<std::atomic<uint64_t>[]> bits_;
  size_t uptodate_blocks_ = 0;
  size_t dirty_blocks_ = 0;
  size_t writeback_blocks_ = 0;
};

}  // namespace untorn
