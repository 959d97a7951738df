// cache/extent_map.h — what untorn knows of the backing file's allocation, with validity
// cookies (DESIGN.md §5, after Linux iomap's validity_cookie).
//
// Owns: per shard (a fixed slice of the device) a mutex, what is known of its allocation
// (ShardAllocation: granules data, hole, zero or unknown; a run list while short, a
// 2-bit-per-granule bitmap once fragmented) and a sequence number, the shard's cookie.
// Holds a reference to the BlockDevice it probes, which must outlive it.
// Filling: lazily, by probing the device (SEEK_DATA/SEEK_HOLE through
// BlockDevice::allocation_at) for the unknown gap holding the asked offset; at most two
// probes a call, and no lock is held across them.
// Keeping current: every change of the allocation that untorn makes goes through
// begin_change / end_change (cache/MappedDevice calls them around each device write and
// zero). begin_change bumps the shard's sequence and marks the range data; end_change
// records the outcome and bumps the sequence again. So:
//   - a mapping handed out before or during a change is never valid after it;
//   - while a change runs, its range reads as "data", the harmless direction: a stale
//     "data" only calls zeroes data, a stale "hole" or "zero" would call data zero (E1)
//     or let a read return zeroes for data. Nothing here ever reports hole or zero with
//     a valid cookie for a range a change is writing (a probe during the change may see
//     a hole, and is handed out with cookie 0).
// A probe's answer is stored only if no change began in its shard while it ran (the
// sequence is unchanged and none was in progress); otherwise it is handed out with cookie
// 0, which is never valid, so the caller re-maps.
// Invariants: what is known lies on multiples of the granularity (L), inside its shard.
// A hole never covers part of a logical block (a partly allocated block is data).
// Memory: at most max_bytes in all (run nodes and bitmaps; never less than two shards'
// bitmaps); past it a whole shard's knowledge is dropped (round robin), to be probed
// again; so is a shard's when an allocation for it fails. Dropping changes no
// allocation: no cookie moves. A change costs the same however fragmented its shard.
// Precondition: changes of overlapping ranges never run at once (the caller serialises
// them: CachedPath by its exclusive range lock and by waiting for writeback), since the
// end of one would publish its state while the other still writes.
// Thread-safe otherwise. Lock order: callers' locks (range lock, folio mutex) before a shard mutex;
// a shard mutex is never held while taking another lock or doing I/O.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

#include "cache/allocation.h"
#include "cache/shard_allocation.h"
#include "device/block_device.h"

namespace untorn {

class ExtentMap {
 public:
  struct Mapping {
    uint64_t offset = 0;
    uint64_t length = 0;
    Allocation state = Allocation::data;
    uint64_t cookie = 0;  // the shard's sequence when taken; 0 is never valid
    uint64_t end() const { return offset + length; }
  };
  struct Options {
    uint64_t max_bytes = uint64_t{16} << 20;
    uint64_t shard_bytes = 0;  // 0: chosen from the device size (at most 65536 shards)
  };
  struct Stats {
    uint64_t entries = 0;       // runs held in run lists
    uint64_t bitmaps = 0;       // shards held as bitmaps
    uint64_t memory_bytes = 0;  // estimate: runs, bitmaps and shards
    uint64_t probes = 0;        // allocation_at calls
    uint64_t hits = 0;          // map/lookup answered without a probe
    uint64_t stale_probes = 0;  // probe answers not stored: a change raced with them
    uint64_t dropped_shards = 0;  // shards whose knowledge was dropped for memory
  };

  // granularity: L; the device size must be a multiple of it.
  ExtentMap(BlockDevice& device, uint32_t granularity, Options options);
  ExtentMap(const ExtentMap&) = delete;
  ExtentMap& operator=(const ExtentMap&) = delete;
  ~ExtentMap();

  // The extent holding `offset` (a multiple of L, < size()), clipped to its shard and to
  // `limit` (> offset): from what is known, else by probing the device.
  Mapping map(uint64_t offset, uint64_t limit);
  // The same from what is known only; nullopt where a probe would be needed.
  std::optional<Mapping> lookup(uint64_t offset, uint64_t limit);
  // Whether no change began in the mapping's shard since it was taken (cheap: one load).
  bool still_valid(const Mapping& m) const;

  // A change of [offset, offset+length) begins / ended; each begin has one end with the
  // same range. While it runs, every block it touches is data. `result`: the allocation
  // of the blocks it covers whole after it succeeded (blocks it covers in part stay
  // data), or nullopt after a failure (every block it touches unknown: probed again when
  // asked). Neither throws (end_change runs in the handlers of failed changes): should
  // memory for the map run out, the shard forgets what it knew.
  void begin_change(uint64_t offset, uint64_t length) noexcept;
  void end_change(uint64_t offset, uint64_t length, std::optional<Allocation> result) noexcept;

  uint64_t granularity() const { return granularity_; }
  uint64_t shard_bytes() const { return shard_bytes_; }
  Stats stats() const;

 private:
  struct Shard {
    std::mutex mutex;
    ShardAllocation known;         // under mutex
    std::atomic<uint64_t> seq{1};  // the cookie; bumped at begin and end of changes
    unsigned changing = 0;         // changes in progress (under mutex)
  };

  Shard& shard_of(uint64_t offset) const { return shards_[offset / shard_bytes_]; }
  uint64_t shard_end(uint64_t offset) const;
  // To a multiple of L (round_up: at most the device's end).
  uint64_t round_down(uint64_t v) const;
  uint64_t round_up(uint64_t v) const;
  // Under the shard mutex: [begin, end) becomes `state` (nullopt: unknown), and the
  // memory it takes is counted (and bounded). Out of memory, the shard's knowledge is
  // dropped instead (counted in dropped_shards); so it never throws, and the counts stay
  // exact.
  void assign_locked(Shard& s, uint64_t begin, uint64_t end, std::optional<Allocation> state) noexcept;
  // Under the shard mutex: the mapping at `offset` from what is known, or nullopt.
  std::optional<Mapping> known_locked(Shard& s, uint64_t offset, uint64_t limit);
  Mapping mapping_of(uint64_t offset, uint64_t limit, uint64_t entry_end, Allocation state,
                     uint64_t cookie) const;
  // What a shard's knowledge costs, to count the change an assignment made.
  struct Footprint {
    uint64_t bytes = 0, runs = 0, bitmaps = 0;
  };
  static Footprint footprint(const Shard& s);
  // Counts the change in s's footprint since `before`, then drops other shards'
  // knowledge (or, failing that, s's own) while over max_bytes.
  void account(Shard& s, Footprint before) noexcept;
  // Under the victim's mutex: forgets its knowledge and uncounts it.
  void drop_locked(Shard& victim) noexcept;
  void bump(Shard& s) { s.seq.fetch_add(1, std::memory_order_release); }

  BlockDevice& device_;
  const uint64_t size_;
  const uint64_t granularity_;
  const uint64_t shard_bytes_;
  const uint64_t max_bytes_;
  const size_t shard_count_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> bytes_{0}, runs_{0}, bitmaps_{0};
  std::atomic<size_t> drop_hand_{0};
  mutable std::atomic<uint64_t> probes_{0}, hits_{0}, stale_probes_{0}, dropped_{0};
};

}  // namespace untorn
