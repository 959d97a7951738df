// cache/honest_extents.h — the device's allocation as NBD block status may report it.
//
// Stateless. Reports a hole only where it covers whole logical blocks: a partly allocated
// block is data (E1: never call data zero).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "device/block_device.h"

namespace untorn {

std::vector<Extent> honest_extents(BlockDevice& device, uint32_t logical_block_size,
                                   uint64_t offset, uint64_t length);

// Marks every range of `data` (sorted, disjoint [begin, end) pairs) as data in `extents`.
std::vector<Extent> overlay_data(const std::vector<Extent>& extents,
                                 const std::vector<std::pair<uint64_t, uint64_t>>& data);

}  // namespace untorn
