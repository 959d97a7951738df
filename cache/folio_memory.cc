#include "cache/folio_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <mutex>
#include <new>
#include <vector>

namespace untorn {
namespace {

constexpr size_t kChunk = 2 << 20;
constexpr size_t kSmallClasses = 4;  // 4K, 8K, 16K, 32K
constexpr size_t kLargeClasses = 11; // 64K .. 64M: kept for reuse; larger are always unmapped

// `populate`: every page faulted in by the one call, far cheaper than a fault per 4 KiB at
// first touch (on a virtual machine each is a trap to the hypervisor). Used for the
// chunks small blocks are carved from, whose blocks are about to be written; not for
// large blocks, which are mapped under the cache's shard mutex.
std::byte* map(size_t size, bool populate = false) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0), -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}

struct SmallPool {
  std::mutex mutex;
  std::vector<std::byte*> resident;      // freed, pages still in memory: reused first
  std::vector<std::byte*> not_resident;  // never touched, or pages given back
};

// Freed large blocks (their own mappings), kept mapped for reuse: unmapping one costs a
// TLB shootdown on every CPU and its replacement a page fault per 4 KiB on first touch
// (together a third of the CPU of 64K random writes through a full cache, in a profile).
struct LargePool {
  std::mutex mutex;
  std::vector<std::byte*> resident;
};

// Every folio is freed before static destruction (the plugin drops its Server at unload,
// tests their caches at the end of each test). The chunks' address space is never
// unmapped; only their pages go back.
std::array<SmallPool, kSmallClasses>& pools() {
  static std::array<SmallPool, kSmallClasses> p;
  return p;
}

std::array<LargePool, kLargeClasses>& large_pools();

// Bytes on all pools' `resident` lists, small and large.
std::atomic<size_t> resident_free{0};

bool kept_large(size_t size) { return std::countr_zero(size) - 16 < static_cast<int>(kLargeClasses); }
LargePool& large_pool(size_t size) { return large_pools()[static_cast<size_t>(std::countr_zero(size)) - 16]; }
// Pops a freed block of `size` kept resident from `list` (its pool's mutex held), or null.
std::byte* take_resident(std::vector<std::byte*>& list, size_t size) {
  if (list.empty()) return nullptr;
  std::byte* p = list.back();
  list.pop_back();
  resident_free.fetch_sub(size, std::memory_order_relaxed);
  return p;
}

size_t class_of(size_t size) { return static_cast<size_t>(std::countr_zero(size)) - 12; }

std::array<LargePool, kLargeClasses>& large_pools() {
  static std::array<LargePool, kLargeClasses> p;
  // Each list has room for as many blocks as the reserve can hold, so that freeing (in a
  // deleter, which must not throw) never allocates.
  static const bool reserved = [] {
    for (size_t c = 0; c < kLargeClasses; ++c)
      p[c].resident.reserve(std::max<size_t>(1, FolioMemory::kResidentReserve >> (c + 16)));
    return true;
  }();
  (void)reserved;
  return p;
}

}  // namespace

size_t FolioMemory::footprint(size_t size) { return size < kPage ? kPage : size; }

FolioMemory::Block FolioMemory::allocate(size_t size) {
  size = footprint(size);
  if (size >= kMappedFrom) {
    if (kept_large(size)) {
      LargePool& pool = large_pool(size);
      std::lock_guard lk(pool.mutex);
      if (std::byte* p = take_resident(pool.resident, size)) return Block(p, Free{size});
    }
    return Block(map(size), Free{size});
  }
  SmallPool& pool = pools()[class_of(size)];
  std::lock_guard lk(pool.mutex);
  if (std::byte* p = take_resident(pool.resident, size)) return Block(p, Free{size});
  if (pool.not_resident.empty()) {
    std::byte* chunk = map(kChunk, /*populate=*/true);
    for (size_t at = kChunk; at > 0; at -= size) pool.not_resident.push_back(chunk + at - size);
  }
  std::byte* p = pool.not_resident.back();
  pool.not_resident.pop_back();
  return Block(p, Free{size});
}

void FolioMemory::Free::operator()(std::byte* p) const {
  if (!p) return;
  if (size >= kMappedFrom) {
    if (kept_large(size)) {
      if (resident_free.fetch_add(size, std::memory_order_relaxed) + size <= kResidentReserve) {
        LargePool& pool = large_pool(size);
        std::lock_guard lk(pool.mutex);
        pool.resident.push_back(p);  // within the capacity reserved up front: no allocation
        return;
      }
      resident_free.fetch_sub(size, std::memory_order_relaxed);
    }
    munmap(p, size);
    return;
  }
  SmallPool& pool = pools()[class_of(size)];
  if (resident_free.fetch_add(size, std::memory_order_relaxed) + size <= kResidentReserve) {
    std::lock_guard lk(pool.mutex);
    pool.resident.push_back(p);
    return;
  }
  resident_free.fetch_sub(size, std::memory_order_relaxed);
  // The pages go back now; the address range stays ours and reads as zeroes when reused.
  // (madvise cannot fail on a private anonymous range of ours; if it did, the block would
  // only stay resident.)
  madvise(p, size, MADV_DONTNEED);
  std::lock_guard lk(pool.mutex);
  pool.not_resident.push_back(p);
}

void FolioMemory::trim() {
  for (size_t c = 0; c < kSmallClasses; ++c) {
    SmallPool& pool = pools()[c];
    const size_t size = size_t{4096} << c;
    std::lock_guard lk(pool.mutex);
    for (std::byte* p : pool.resident) {
      madvise(p, size, MADV_DONTNEED);
      pool.not_resident.push_back(p);
      resident_free.fetch_sub(size, std::memory_order_relaxed);
    }
    pool.resident.clear();
  }
  for (size_t c = 0; c < kLargeClasses; ++c) {
    LargePool& pool = large_pools()[c];
    const size_t size = size_t{65536} << c;
    std::lock_guard lk(pool.mutex);
    for (std::byte* p : pool.resident) {
      munmap(p, size);
      resident_free.fetch_sub(size, std::memory_order_relaxed);
    }
    pool.resident.clear();
  }
}

}  // namespace untorn
