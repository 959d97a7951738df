#include "cache/mapped_device.h"

#include "util/io_error.h"

namespace untorn {

template <typename F>
void MappedDevice::changing(uint64_t offset, uint64_t length, Allocation after, F&& change) {
  if (length == 0) {
    change();
    return;
  }
  const uint64_t L = map_.granularity();
  const uint64_t begin = offset / L * L, end = (offset + length + L - 1) / L * L;
  map_.begin_change(begin, end - begin);
  try {
    change();
  } catch (...) {
    map_.end_change(begin, end - begin, std::nullopt);  // unknown: probed again when asked
    throw;
  }
  // Only whole blocks take the new state: a block zeroed in part may still hold data.
  const uint64_t whole_begin = (offset + L - 1) / L * L, whole_end = (offset + length) / L * L;
  map_.end_change(begin, end - begin, after, whole_begin, std::max(whole_begin, whole_end));
}

void MappedDevice::write(uint64_t offset, std::span<const std::byte> src) {
  changing(offset, src.size(), Allocation::data, [&] { inner().write(offset, src); });
}

void MappedDevice::write_atomic(uint64_t offset, std::span<const std::byte> src) {
  changing(offset, src.size(), Allocation::data, [&] { inner().write_atomic(offset, src); });
}

void MappedDevice::write_batch(std::span<WriteRequest> writes) {
  const uint64_t L = map_.granularity();
  auto range = [L](const WriteRequest& w) {
    const uint64_t b = w.offset / L * L;
    return std::pair{b, (w.offset + w.data.size() + L - 1) / L * L - b};
  };
  for (const WriteRequest& w : writes) {
    const auto [b, n] = range(w);
    if (n) map_.begin_change(b, n);
  }
  try {
    inner().write_batch(writes);
  } catch (...) {
    for (const WriteRequest& w : writes) {
      const auto [b, n] = range(w);
      if (n) map_.end_change(b, n, std::nullopt);
    }
    throw;
  }
  for (const WriteRequest& w : writes) {
    const auto [b, n] = range(w);
    if (n) map_.end_change(b, n, w.error ? std::nullopt : std::optional(Allocation::data));
  }
}

void MappedDevice::write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) {
  // A punch that the filesystem could not do falls back to zeroing; both read as zeroes,
  // and "hole" is only a hint to the client.
  changing(offset, length, options.may_punch ? Allocation::hole : Allocation::zero,
           [&] { inner().write_zeroes(offset, length, options); });
}

}  // namespace untorn
