// cache/shard_allocation.h — what is known of the allocation of one extent-map shard.
//
// Owns the knowledge of one fixed slice [begin, end) of the device, in granules of L:
// each granule is unknown, data, hole or zero. Two forms, chosen by fragmentation:
//   - a run list (ordered map of disjoint, merged runs) while it holds at most kMaxRuns
//     runs and takes no more memory than the bitmap would: a few entries for the coarse
//     allocation of most files;
//   - past that, a bitmap of 2 bits per granule (unknown 0, data 1, hole 2, zero 3), of
//     fixed size (granules / 4 bytes): random writes into a sparse file cut its runs
//     into thousands, and every change then walked a deep tree and allocated nodes; the
//     bitmap's cost grows with the length asked about, not with the number of runs.
// A whole-slice assignment or clear() goes back to the run list; nothing else does (a
// bitmap whose granules have merged back into few runs stays a bitmap: its cost is fixed).
// Not thread-safe (the ExtentMap's shard mutex guards it). assign() allocates (run nodes,
// the bitmap once, the one run of a whole-slice assignment) and may throw
// std::bad_alloc: then every granule holds its old state, the new one or unknown, never
// a state it was not given, and the form may break its rules (a list one run too long,
// an empty run left in it, which answers nothing);
// a caller that must not fail calls clear(), which never throws.
// Invariants: runs lie inside [begin, end) on granule multiples, are disjoint, and
// neighbours of one state are merged; in either form, at() answers what assign() set.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "cache/allocation.h"

namespace untorn {


class ShardAllocation {
 public:
  static constexpr size_t kMaxRuns = 32;
  // A run list node as the allocator sees it (key, run, tree links).
  static constexpr uint64_t kRunBytes = 64;

  struct Run {
    std::optional<Allocation> state;  // nullopt: unknown
    uint64_t end;                     // where the run ends, or `limit` if sooner
  };

  ShardAllocation() = default;
  ShardAllocation(const ShardAllocation&) = delete;
  ShardAllocation& operator=(const ShardAllocation&) = delete;

  // What the bitmap of a slice of `length` bytes in granules of `granularity` takes.
  static uint64_t bitmap_bytes(uint64_t length, uint64_t granularity);

  // The slice this shard covers; called before any other call (again only after clear()).
  void place(uint64_t begin, uint64_t end, uint64_t granularity);

  // The run holding `offset` (a granule multiple in the slice), up to `limit` (> offset).
  Run at(uint64_t offset, uint64_t limit) const;
  // [begin, end) (granule multiples inside the slice) becomes `state` (nullopt: unknown).
  void assign(uint64_t begin, uint64_t end, std::optional<Allocation> state);
  // Forgets everything (all unknown).
  void clear() noexcept;

  // Memory held: run nodes or the bitmap.
  uint64_t memory_bytes() const;
  // Runs held in the run list (0 in bitmap form).
  uint64_t runs() const { return bits_ ? 0 : runs_.size(); }
  bool is_bitmap() const { return bits_ != nullptr; }

 private:
  struct Entry {
    uint64_t end;
    Allocation state;
  };
  // Run list form.
  Run list_at(uint64_t offset, uint64_t limit) const;
  void list_assign(uint64_t begin, uint64_t end, std::optional<Allocation> state);
  // Bitmap form; granule indexes relative to begin_.
  uint64_t granule(uint64_t offset) const { return (offset - begin_) / granularity_; }
  unsigned code_at(uint64_t g) const;
  // The first granule in [g, limit) whose code is not `code`, or limit.
  uint64_t scan(uint64_t g, uint64_t limit, unsigned code) const;
  void set_codes(uint64_t g, uint64_t limit, unsigned code);
  // Most runs the list holds before it becomes a bitmap.
  uint64_t max_runs() const;
  void to_bitmap();

  uint64_t begin_ = 0, end_ = 0, granularity_ = 1;
  std::map<uint64_t, Entry> runs_;     // by start; unused in bitmap form
  std::unique_ptr<uint64_t[]> bits_;  // 32 granules a word; null in run list form
  uint64_t words_ = 0;
};

}  // namespace untorn
