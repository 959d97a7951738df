#include "cache/folio_memory.h"

#include <sys/mman.h>

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

std::byte* map(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}

struct SmallPool {
  std::mutex mutex;
  std::vector<std::byte*> resident;      // freed, pages still in memory: reused first
  std::vector<std::byte*> not_resident;  // never touched, or pages given back
};

// Every folio is freed before static destruction (the plugin drops its Server at unload,
// tests their caches at the end of each test). The chunks' address space is never
// unmapped; only their pages go back.
std::array<SmallPool, kSmallClasses>& pools() {
  static std::array<SmallPool, kSmallClasses> p;
  return p;
}

// Bytes on all pools' `resident` lists.
std::atomic<size_t> resident_free{0};

size_t class_of(size_t size) { return static_cast<size_t>(std::countr_zero(size)) - 12; }

}  // namespace

size_t FolioMemory::footprint(size_t size) { return size < kPage ? kPage : size; }

FolioMemory::Block FolioMemory::allocate(size_t size) {
  size = footprint(size);
  if (size >= kMappedFrom) return Block(map(size), Free{size});
  SmallPool& pool = pools()[class_of(size)];
  std::lock_guard lk(pool.mutex);
  if (!pool.resident.empty()) {
    std::byte* p = pool.resident.back();
    pool.resident.pop_back();
    resident_free.fetch_sub(size, std::memory_order_relaxed);
    return Block(p, Free{size});
  }
  if (pool.not_resident.empty()) {
    std::byte* chunk = map(kChunk);
    for (size_t at = kChunk; at > 0; at -= size) pool.not_resident.push_back(chunk + at - size);
  }
  std::byte* p = pool.not_resident.back();
  pool.not_resident.pop_back();
  return Block(p, Free{size});
}

void FolioMemory::Free::operator()(std::byte* p) const {
  if (!p) return;
  if (size >= kMappedFrom) {
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

}  // namespace untorn
