#include "cache/direct_path.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "cache/honest_extents.h"
#include "cache/request_range.h"
#include "device/aligned_buffer.h"
#include "util/io_error.h"

namespace untorn {
DirectPath::DirectPath(BlockDevice& device, AtomicWriter& writer, uint32_t logical_block_size,
                       uint32_t atomic_write_unit_max)
    : device_(device),
      writer_(writer),
      logical_block_size_(logical_block_size),
      atomic_write_unit_max_(atomic_write_unit_max),
      granule_(std::max(logical_block_size, device.io_align())) {}

void DirectPath::read(uint64_t offset, std::span<std::byte> dst) {
  check_request_range(size(), offset, dst.size(), EINVAL, "read");
  if (dst.empty()) return;
  const uint64_t begin = align_down(offset);
  const uint64_t end = align_up(offset + dst.size());
  // A1: shared against every write's exclusive hold (test: IntegrationTest.NoTornReads).
  auto guard = locks_.lock(begin, end - begin, RangeLock::Mode::shared);
  if (begin == offset && end == offset + dst.size()) {
    device_.read(offset, dst);
    return;
  }
  AlignedBuffer buffer(end - begin, AlignedBuffer::Uninitialized{});  // filled by the read
  device_.read(begin, buffer.span());
  std::memcpy(dst.data(), buffer.data() + (offset - begin), dst.size());
}

void DirectPath::write_granules(uint64_t offset, uint64_t length, const std::byte* src, bool atomic,
                                bool fua) {
  const uint64_t begin = align_down(offset);
  const uint64_t end = align_up(offset + length);
  if (begin == offset && end == offset + length && src) {
    writer_.write(offset, {src, length}, atomic, fua);
    return;
  }
  // Every byte is filled below: edge granules by reads, the rest by src or zeroes.
  AlignedBuffer buffer(end - begin, AlignedBuffer::Uninitialized{});
  // Read only the edge granules the request does not cover completely.
  if (offset != begin) device_.read(begin, buffer.span().first(granule_));
  if (offset + length != end && (end - granule_ != begin || offset == begin))
    device_.read(end - granule_, buffer.span().last(granule_));
  if (src) std::memcpy(buffer.data() + (offset - begin), src, length);
  else std::memset(buffer.data() + (offset - begin), 0, length);
  writer_.write(begin, buffer.span(), atomic, fua);
}

void DirectPath::write(uint64_t offset, std::span<const std::byte> src, bool fua) {
  check_request_range(size(), offset, src.size(), ENOSPC, "write");
  if (src.empty()) return;
  const uint64_t begin = align_down(offset);
  const uint64_t end = align_up(offset + src.size());
  // Exclusive for the whole read-modify-write and crash-atomic write: A1, and no lost
  // update (test: DirectPathTest.ConcurrentUnalignedWritesLoseNothing).
  auto guard = locks_.lock(begin, end - begin, RangeLock::Mode::exclusive);
  const bool atomic = atomic_eligible(offset, src.size(), logical_block_size_, atomic_write_unit_max_);
  write_granules(offset, src.size(), src.data(), atomic, fua);
}

void DirectPath::zero(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) {
  check_request_range(size(), offset, length, ENOSPC, "zero");
  if (length == 0) return;
  const uint64_t end = offset + length;
  const bool atomic = atomic_eligible(offset, length, logical_block_size_, atomic_write_unit_max_);
  auto guard = locks_.lock(align_down(offset), align_up(end) - align_down(offset),
                           RangeLock::Mode::exclusive);
  const uint64_t mid_begin = align_up(offset);
  const uint64_t mid_end = align_down(end);
  const bool has_edges = offset != mid_begin || end != mid_end;
  if (mid_begin >= mid_end || (atomic && has_edges)) {
    // Within granules, or an eligible zero with partial granules: one write of zeroes,
    // so it stays a single crash-atomic operation.
    write_granules(offset, length, nullptr, atomic, fua);
    return;
  }
  // The aligned middle first: if a fast zero is refused, nothing has changed yet.
  writer_.zero(mid_begin, mid_end - mid_begin, options, atomic, fua && !has_edges);
  if (offset < mid_begin) write_granules(offset, mid_begin - offset, nullptr, false, false);
  if (mid_end < end) write_granules(mid_end, end - mid_end, nullptr, false, false);
  if (fua && has_edges) writer_.flush();
}

void DirectPath::trim(uint64_t offset, uint64_t length, bool fua) {
  check_request_range(size(), offset, length, EINVAL, "trim");
  zero(offset, length, ZeroOptions{.may_punch = true, .fast_only = false}, fua);
}

void DirectPath::flush() { writer_.flush(); }

std::vector<Extent> DirectPath::extents(uint64_t offset, uint64_t length, bool /*req_one*/) {
  check_request_range(size(), offset, length, EINVAL, "block status");
  if (length == 0) return {};
  // Ask for whole logical blocks, and report a hole only where it covers whole logical
  // blocks: a partly allocated block is data (E1: never call data zero; tests:
  // DirectPathTest.ExtentsNeverCallDataAHole, DirectPathTest.PartlyZeroedBlockIsReportedAsData,
  // IntegrationTest.RandomOperationsMatchAModel).
  return honest_extents(device_, logical_block_size_, offset, length);
}

void DirectPath::prefetch(uint64_t offset, uint64_t length) {
  // Nothing to warm without a cache; the range is still checked so a bad request fails.
  check_request_range(size(), offset, length, EINVAL, "cache");
}

}  // namespace untorn
