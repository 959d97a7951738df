#include "cache/direct_path.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "device/aligned_buffer.h"
#include "util/io_error.h"

namespace untorn {
namespace {

void check_range(uint64_t size, uint64_t offset, uint64_t length, int err, const char* what) {
  if (offset > size || length > size - offset)
    throw IoError(err, std::string(what) + " out of range: offset " + std::to_string(offset) +
                           " length " + std::to_string(length) + " exceeds the device size " +
                           std::to_string(size));
}

}  // namespace

DirectPath::DirectPath(BlockDevice& device, uint32_t logical_block_size)
    : device_(device),
      logical_block_size_(logical_block_size),
      granule_(std::max(logical_block_size, device.io_align())) {}

void DirectPath::read(uint64_t offset, std::span<std::byte> dst) {
  check_range(size(), offset, dst.size(), EINVAL, "read");
  if (dst.empty()) return;
  const uint64_t begin = align_down(offset);
  const uint64_t end = align_up(offset + dst.size());
  auto guard = locks_.lock(begin, end - begin, RangeLock::Mode::shared);
  if (begin == offset && end == offset + dst.size()) {
    device_.read(offset, dst);
    return;
  }
  AlignedBuffer buffer(end - begin);
  device_.read(begin, buffer.span());
  std::memcpy(dst.data(), buffer.data() + (offset - begin), dst.size());
}

void DirectPath::write(uint64_t offset, std::span<const std::byte> src, bool fua) {
  check_range(size(), offset, src.size(), ENOSPC, "write");
  if (src.empty()) return;
  const uint64_t begin = align_down(offset);
  const uint64_t end = align_up(offset + src.size());
  {
    auto guard = locks_.lock(begin, end - begin, RangeLock::Mode::exclusive);
    if (begin == offset && end == offset + src.size()) {
      device_.write(offset, src);
    } else {
      AlignedBuffer buffer(end - begin);
      // Read only the edge granules the write does not cover completely.
      if (offset != begin) device_.read(begin, buffer.span().first(granule_));
      if (offset + src.size() != end && (end - granule_ != begin || offset == begin))
        device_.read(end - granule_, buffer.span().last(granule_));
      std::memcpy(buffer.data() + (offset - begin), src.data(), src.size());
      device_.write(begin, buffer.span());
    }
  }
  if (fua) device_.sync();
}

void DirectPath::zero_within_granule(uint64_t offset, uint64_t length) {
  const uint64_t begin = align_down(offset);
  AlignedBuffer buffer(granule_);
  device_.read(begin, buffer.span());
  std::memset(buffer.data() + (offset - begin), 0, length);
  device_.write(begin, buffer.span());
}

void DirectPath::zero(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) {
  check_range(size(), offset, length, ENOSPC, "zero");
  if (length == 0) return;
  const uint64_t end = offset + length;
  {
    auto guard = locks_.lock(align_down(offset), align_up(end) - align_down(offset),
                             RangeLock::Mode::exclusive);
    const uint64_t mid_begin = align_up(offset);
    const uint64_t mid_end = align_down(end);
    if (mid_begin < mid_end) {
      // The aligned middle first: if a fast zero is refused, nothing has changed yet.
      device_.write_zeroes(mid_begin, mid_end - mid_begin, options);
      if (offset < mid_begin) zero_within_granule(offset, mid_begin - offset);
      if (mid_end < end) zero_within_granule(mid_end, end - mid_end);
    } else if (align_down(offset) == align_down(end - 1)) {
      zero_within_granule(offset, length);  // inside one granule
    } else {
      // Two partial granules that meet at a boundary.
      zero_within_granule(offset, mid_begin - offset);
      zero_within_granule(mid_begin, end - mid_begin);
    }
  }
  if (fua) device_.sync();
}

void DirectPath::trim(uint64_t offset, uint64_t length, bool fua) {
  check_range(size(), offset, length, EINVAL, "trim");
  zero(offset, length, ZeroOptions{.may_punch = true, .fast_only = false}, fua);
}

void DirectPath::flush() { device_.sync(); }

std::vector<Extent> DirectPath::extents(uint64_t offset, uint64_t length) {
  check_range(size(), offset, length, EINVAL, "block status");
  if (length == 0) return {};
  // Ask for whole logical blocks, and report a hole only where it covers whole logical
  // blocks: a partly allocated block is data (E1: never call data zero).
  const uint64_t L = logical_block_size_;
  const uint64_t begin = offset / L * L;
  const uint64_t end = std::min(size(), (offset + length + L - 1) / L * L);
  std::vector<Extent> out;
  auto add = [&](uint64_t from, uint64_t to, bool data) {
    from = std::max(from, offset);
    to = std::min(to, offset + length);
    if (to <= from) return;
    if (!out.empty() && out.back().data == data) out.back().length += to - from;
    else out.push_back({from, to - from, data});
  };
  for (const Extent& e : device_.extents(begin, end - begin)) {
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

void DirectPath::prefetch(uint64_t offset, uint64_t length) {
  // Nothing to warm without a cache; the range is still checked so a bad request fails.
  check_range(size(), offset, length, EINVAL, "cache");
}

}  // namespace untorn
