// device/crc32c.h — CRC32C (Castagnoli), the journal's checksum.
// Pure function; uses the SSE4.2 instruction when the CPU has it, a table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace untorn {

// Extends `crc` (start with 0) over `data`.
uint32_t crc32c(uint32_t crc, const void* data, size_t length);

}  // namespace untorn
