#include "device/backing.h"

#include "device/backing_file.h"
#include "util/io_error.h"
#ifdef UNTORN_WITH_RBD
#include "device/rbd_image.h"
#endif

namespace untorn {

std::unique_ptr<Backing> open_backing(const Config::Backing& backing, uint32_t logical_block_size,
                                      bool readonly) {
  if (!backing.rbd.empty()) {
#ifdef UNTORN_WITH_RBD
    return RbdImage::open(backing, logical_block_size, readonly);
#else
    throw IoError(ENOTSUP, "backing.rbd: this untorn was built without Ceph RBD support "
                           "(install librbd-dev and librados-dev, then rebuild: meson's rbd option)");
#endif
  }
  return BackingFile::open(backing, logical_block_size, readonly);
}

}  // namespace untorn
