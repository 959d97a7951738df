#include "cache/honest_extents.h"

#include <algorithm>

namespace untorn {
namespace {

void append(std::vector<Extent>& out, uint64_t from, uint64_t to, bool data, bool allocated = false) {
  if (to <= from) return;
  allocated &= !data;
  if (!out.empty() && out.back().data == data && out.back().allocated == allocated &&
      out.back().offset + out.back().length == from)
    out.back().length += to - from;
  else
    out.push_back({from, to - from, data, allocated});
}

}  // namespace

std::vector<Extent> honest_extents(BlockDevice& device, uint32_t logical_block_size,
                                   uint64_t offset, uint64_t length) {
  const uint64_t L = logical_block_size;
  const uint64_t begin = offset / L * L;
  const uint64_t end = std::min(device.size(), (offset + length + L - 1) / L * L);
  std::vector<Extent> out;
  auto add = [&](uint64_t from, uint64_t to, bool data) {
    append(out, std::max(from, offset), std::min(to, offset + length), data);
  };
  for (const Extent& e : device.extents(begin, end - begin)) {
    if (e.data) {
      add(e.offset, e.offset + e.length, true);
      continue;
    }
    const uint64_t hole_begin = (e.offset + L - 1) / L * L;
    const uint64_t hole_end = (e.offset + e.length) / L * L;
    if (hole_begin >= hole_end) {
      add(e.offset, e.offset + e.length, true);
      continue;
    }
    add(e.offset, hole_begin, true);
    add(hole_begin, hole_end, false);
    add(hole_end, e.offset + e.length, true);
  }
  return out;
}

std::vector<Extent> overlay_data(const std::vector<Extent>& extents,
                                 const std::vector<std::pair<uint64_t, uint64_t>>& data) {
  std::vector<Extent> out;
  size_t d = 0;
  for (const Extent& e : extents) {
    const uint64_t end = e.offset + e.length;
    if (e.data) {
      append(out, e.offset, end, true);
      continue;
    }
    uint64_t pos = e.offset;
    while (d < data.size() && data[d].second <= pos) ++d;
    for (size_t k = d; k < data.size() && data[k].first < end; ++k) {
      const uint64_t s = std::max(pos, data[k].first), t = std::min(end, data[k].second);
      append(out, pos, s, false, e.allocated);
      append(out, s, t, true);
      pos = t;
    }
    append(out, pos, end, false, e.allocated);
  }
  return out;
}

}  // namespace untorn
