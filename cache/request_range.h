// cache/request_range.h — the range check every request path makes first.
//
// Stateless. NBD's answer to a request past the end: EINVAL for read, trim, block status
// and cache; ENOSPC for write and write-zeroes.
#pragma once

#include <cstdint>
#include <string>

#include "util/io_error.h"

namespace untorn {

inline void check_request_range(uint64_t size, uint64_t offset, uint64_t length, int err,
                                const char* what) {
  if (offset > size || length > size - offset)
    throw IoError(err, std::string(what) + " out of range: offset " + std::to_string(offset) +
                           " length " + std::to_string(length) + " exceeds the device size " +
                           std::to_string(size));
}

}  // namespace untorn
