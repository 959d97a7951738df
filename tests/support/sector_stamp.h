// tests/support/sector_stamp.h — self-describing data: every 512-byte sector of a test
// write names the write (id), the write's offset and length, and its own index in it,
// and the rest of the sector is a pattern derived from those. A checker reading a sector
// back knows exactly which write put it there, or that it is zero, or that it is
// garbage (a torn sector, or data from nowhere).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace untorn::testing {

constexpr uint64_t kSector = 512;
constexpr uint32_t kStampMagic = 0x554e5452;  // "UNTR"

inline std::byte filler(uint32_t id, uint32_t index, size_t i) {
  return static_cast<std::byte>((id * 2654435761u + index * 40503u + i * 131u) >> 7);
}

// Fills `buf` (the data of write `id` at `offset`) with stamped sectors.
inline void stamp(std::span<std::byte> buf, uint32_t id, uint64_t offset) {
  const uint32_t length = static_cast<uint32_t>(buf.size());
  for (uint32_t s = 0; s * kSector < buf.size(); ++s) {
    std::byte* p = buf.data() + s * kSector;
    std::memcpy(p, &kStampMagic, 4);
    std::memcpy(p + 4, &id, 4);
    std::memcpy(p + 8, &offset, 8);
    std::memcpy(p + 16, &length, 4);
    std::memcpy(p + 20, &s, 4);
    for (size_t i = 24; i < kSector; ++i) p[i] = filler(id, s, i);
  }
}

struct SectorContent {
  enum class Kind { zero, stamped, garbage } kind;
  uint32_t id = 0;  // for stamped
};

// What the sector at absolute byte offset `at` holds.
inline SectorContent read_stamp(const std::byte* p, uint64_t at) {
  bool all_zero = true;
  for (size_t i = 0; i < kSector && all_zero; ++i) all_zero = p[i] == std::byte{0};
  if (all_zero) return {SectorContent::Kind::zero};
  uint32_t magic, id, length, index;
  uint64_t offset;
  std::memcpy(&magic, p, 4);
  std::memcpy(&id, p + 4, 4);
  std::memcpy(&offset, p + 8, 8);
  std::memcpy(&length, p + 16, 4);
  std::memcpy(&index, p + 20, 4);
  if (magic != kStampMagic || uint64_t{index} * kSector >= length || offset + index * kSector != at)
    return {SectorContent::Kind::garbage};
  for (size_t i = 24; i < kSector; ++i)
    if (p[i] != filler(id, index, i)) return {SectorContent::Kind::garbage};
  return {SectorContent::Kind::stamped, id};
}

}  // namespace untorn::testing
