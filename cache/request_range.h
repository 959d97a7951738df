// cache/request_range.h — what every request path asks of a request first: is it in
// range, and is it atomic-eligible.
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

// DESIGN.md §1: a write or zero is atomic-eligible when offset and length are multiples
// of L and the length is at most A.
inline bool atomic_eligible(uint64_t offset, uint64_t length, uint32_t logical_block_size,
                            uint32_t atomic_write_unit_max) {
  return length > 0 && offset % logical_block_size == 0 && length % logical_block_size == 0 &&
         length <= atomic_write_unit_max;
}

}  // namespace untorn
