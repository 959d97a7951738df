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

void BlockDevice::throw_atomic_unsupported() {
  throw IoError(ENOTSUP, "this device offers no atomic write for that range");
}

}  // namespace untorn
