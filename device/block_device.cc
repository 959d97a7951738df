#include "device/block_device.h"

#include "util/io_error.h"

namespace untorn {

void BlockDevice::write_batch(std::span<WriteRequest> writes) {
  for (WriteRequest& w : writes) {
    try {
      write(w.offset, w.data);
    } catch (const IoError& e) {
      w.error = e.err();
      w.message = e.what();
    }
  }
}

Extent BlockDevice::allocation_at(uint64_t offset, uint64_t limit) {
  const std::vector<Extent> all = extents(offset, limit - offset);
  if (all.empty()) return {offset, limit - offset, true};
  return all.front();
}

void BlockDevice::throw_atomic_unsupported() {
  throw IoError(ENOTSUP, "this device offers no atomic write for that range");
}

}  // namespace untorn
