#include "device/block_device.h"

#include "util/io_error.h"

namespace untorn {

void BlockDevice::throw_atomic_unsupported() {
  throw IoError(ENOTSUP, "this device offers no atomic write for that range");
}

}  // namespace untorn
