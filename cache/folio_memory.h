// cache/folio_memory.h — where folio data lives: page-aligned blocks that go back to the
// system, or to a reuse list, when a folio is freed.
//
// Owns a process-wide pool. Blocks of 64 KiB and more are their own anonymous mappings
// (munmap returns them at once). Smaller blocks (4K..32K, powers of two) are carved from
// 2 MiB mappings per size and kept on a free list of that size when freed: posix_memalign
// would waste up to a page per block and fragment the heap, so that a cache of 4K folios
// used twice its budget in resident memory. Invariant: a block is page-aligned and its
// size is a power of two >= 4096 (smaller requests get a page). Thread-safe.
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
  static constexpr size_t kPage = 4096;
  static constexpr size_t kMappedFrom = 64 * 1024;
};

}  // namespace untorn
