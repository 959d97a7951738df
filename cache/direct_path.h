// cache/direct_path.h — requests straight to the device, no cache.
//
// Holds references (not ownership) to a BlockDevice and the AtomicWriter over it, which
// must outlive it. Every write, zero and trim goes to the device through the writer, which
// makes an atomic-eligible one (offset and length multiples of L, length <= A) a single
// crash-atomic operation (A2).
// Works in granules of G = max(L, device io_align): a request not aligned to G is served by
// read-modify-write of its edge granules. Every write, zero and trim holds its G-aligned
// range exclusive in the RangeLock for its whole read-modify-write, and every read holds
// its range shared, so overlapping requests apply whole, in some order (A1 on this path;
// tests: DirectPathTest.ConcurrentUnalignedWritesLoseNothing, IntegrationTest.NoTornReads).
// Trim is zeroing that may punch holes: trimmed data never reads back (T1).
#pragma once

#include "cache/range_lock.h"
#include "cache/request_path.h"
#include "device/atomic_writer.h"

namespace untorn {

class DirectPath final : public RequestPath {
 public:
  DirectPath(BlockDevice& device, AtomicWriter& writer, uint32_t logical_block_size,
             uint32_t atomic_write_unit_max);

  uint64_t size() const override { return device_.size(); }
  void read(uint64_t offset, std::span<std::byte> dst) override;
  void write(uint64_t offset, std::span<const std::byte> src, bool fua) override;
  void zero(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) override;
  void trim(uint64_t offset, uint64_t length, bool fua) override;
  void flush() override;
  std::vector<Extent> extents(uint64_t offset, uint64_t length, bool req_one = false) override;
  void prefetch(uint64_t offset, uint64_t length) override;

  uint32_t granule() const { return granule_; }

 private:
  uint64_t align_down(uint64_t v) const { return v / granule_ * granule_; }
  uint64_t align_up(uint64_t v) const { return (v + granule_ - 1) / granule_ * granule_; }
  // Writes src at offset through the writer, by read-modify-write of the edge granules
  // when unaligned; src null means zeroes. The caller holds the aligned range exclusive.
  void write_granules(uint64_t offset, uint64_t length, const std::byte* src, bool atomic, bool fua);

  BlockDevice& device_;
  AtomicWriter& writer_;
  uint32_t logical_block_size_;
  uint32_t atomic_write_unit_max_;
  uint32_t granule_;
  RangeLock locks_;
};

}  // namespace untorn
