// cache/folio_memory.h — where folio data lives: page-aligned blocks that go back to the
// system, or to a reuse list, when a folio is freed.
//
// Owns a process-wide pool. Blocks of 64 KiB and more are their own anonymous mappings;
// freed ones (up to 64 MiB each) stay mapped on a reuse list of their size while the
// kResidentReserve allows, otherwise munmap returns them at once. Smaller blocks
// (4K..32K, powers of two) are carved from 2 MiB mappings per size and kept on a free
// list of that size when freed: posix_memalign would waste up to a page per block and
// fragment the heap, so that a cache of 4K folios used twice its budget in resident
// memory. Freed small blocks stay resident only up to kResidentReserve in all; beyond it
// their pages are returned (madvise MADV_DONTNEED) and the block waits, not resident, for
// reuse. So a cache whose 4K folios are replaced by large ones does not hold both. The 2
// MiB chunks are populated when mapped (MAP_POPULATE: one call instead of a page fault per
// 4 KiB at first touch); so a size's partly used chunk is resident in full (at most 8 MiB
// over the four sizes). Invariant: a block is page-aligned and its size is a power of
// two >= 4096 (smaller requests get a page). Thread-safe.
#pragma once

#include <cstddef>
#include <memory>

namespace untorn {

class FolioMemory {
 public:
  struct Free {
    size_t size;
    void operator()(std::byte* p) const;
  };
  using Block = std::unique_ptr<std::byte, Free>;

  // A block of at least `size` bytes (a power of two; below a page, a whole page is
  // used), contents undefined. Throws std::bad_alloc when the system has no memory.
  static Block allocate(size_t size);
  // The memory a block of `size` really takes.
  static size_t footprint(size_t size);
  // Returns every freed block kept resident to the system (tests start clean with it).
  static void trim();
  static constexpr size_t kPage = 4096;
  static constexpr size_t kMappedFrom = 64 * 1024;
  // Freed blocks kept resident for reuse, in all sizes together, at most this much
  // (within the 32 MiB the memory budget allows beyond cache.size); pages of blocks freed
  // beyond it go back to the system.
  static constexpr size_t kResidentReserve = 16 << 20;
};

}  // namespace untorn
