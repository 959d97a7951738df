// cache/mapped_device.h — the backing device as the request paths see it: every change of
// its allocation is announced to the ExtentMap.
//
// Holds references to the inner BlockDevice and the ExtentMap, which must outlive it.
// Forwards every call to the inner device (ForwardingDevice); around each write (one,
// batched or RWF_ATOMIC) and each zero it calls ExtentMap::begin_change before and end_change after, so the map
// is kept current by untorn's own writeback, write-through, zeroes and trims, and every
// mapping taken before such a change loses its validity (DESIGN.md §5). Journal replay
// runs on the raw file before the map exists, so the map starts from the replayed file.
// Changes made to the file by anything else while untorn serves it are not supported, and
// callers never write or zero overlapping ranges at once (ExtentMap's precondition).
#pragma once

#include "cache/extent_map.h"
#include "device/forwarding_device.h"

namespace untorn {

class MappedDevice final : public ForwardingDevice {
 public:
  MappedDevice(BlockDevice& inner, ExtentMap& map) : ForwardingDevice(inner), map_(map) {}

  // The calls that change the allocation; everything else is forwarded as it is.
  void write(uint64_t offset, std::span<const std::byte> src) override;
  void write_batch(std::span<WriteRequest> writes) override;
  void write_atomic(uint64_t offset, std::span<const std::byte> src) override;
  void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) override;

 private:
  // Runs `change` on the inner device as one change of [offset, offset+length) in the
  // map; `after` is the allocation it leaves when it succeeds (the map gives it to the
  // blocks the change covers whole).
  template <typename F>
  void changing(uint64_t offset, uint64_t length, Allocation after, F&& change);

  ExtentMap& map_;
};

}  // namespace untorn
