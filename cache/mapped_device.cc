#include "cache/mapped_device.h"

namespace untorn {

template <typename F>
void MappedDevice::changing(uint64_t offset, uint64_t length, Allocation after, F&& change) {
  if (length == 0) {
    change();
    return;
  }
  map_.begin_change(offset, length);
  try {
    change();
  } catch (...) {
    map_.end_change(offset, length, std::nullopt);  // unknown: probed again when asked
    throw;
  }
  map_.end_change(offset, length, after);  // the blocks it covered in part stay data
}

void MappedDevice::write(uint64_t offset, std::span<const std::byte> src) {
  changing(offset, src.size(), Allocation::data, [&] { inner().write(offset, src); });
}

void MappedDevice::write_atomic(uint64_t offset, std::span<const std::byte> src) {
  changing(offset, src.size(), Allocation::data, [&] { inner().write_atomic(offset, src); });
}

void MappedDevice::write_batch(std::span<WriteRequest> writes) {
  for (const WriteRequest& w : writes)
    if (!w.data.empty()) map_.begin_change(w.offset, w.data.size());
  try {
    inner().write_batch(writes);
  } catch (...) {
    for (const WriteRequest& w : writes)
      if (!w.data.empty()) map_.end_change(w.offset, w.data.size(), std::nullopt);
    throw;
  }
  for (const WriteRequest& w : writes)
    if (!w.data.empty())
      map_.end_change(w.offset, w.data.size(), w.error ? std::nullopt : std::optional(Allocation::data));
}

void MappedDevice::write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) {
  // A punch that the filesystem could not do falls back to zeroing; both read as zeroes,
  // and "hole" is only a hint to the client.
  changing(offset, length, options.may_punch ? Allocation::hole : Allocation::zero,
           [&] { inner().write_zeroes(offset, length, options); });
}

}  // namespace untorn
