#include "cache/folio_memory.h"

#include <sys/mman.h>

#include <array>
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
  std::vector<std::byte*> free;
};

// Every folio is freed before static destruction (the plugin drops its Server at unload,
// tests their caches at the end of each test). The chunks themselves are never unmapped.
std::array<SmallPool, kSmallClasses>& pools() {
  static std::array<SmallPool, kSmallClasses> p;
  return p;
}

size_t class_of(size_t size) { return static_cast<size_t>(std::countr_zero(size)) - 12; }

}  // namespace

size_t FolioMemory::footprint(size_t size) { return size < kPage ? kPage : size; }

FolioMemory::Block FolioMemory::allocate(size_t size) {
  size = footprint(size);
  if (size >= kMappedFrom) return Block(map(size), Free{size});
  SmallPool& pool = pools()[class_of(size)];
  std::lock_guard lk(pool.mutex);
  if (pool.free.empty()) {
    std::byte* chunk = map(kChunk);
    for (size_t at = kChunk; at > 0; at -= size) pool.free.push_back(chunk + at - size);
  }
  std::byte* p = pool.free.back();
  pool.free.pop_back();
  return Block(p, Free{size});
}

void FolioMemory::Free::operator()(std::byte* p) const {
  if (!p) return;
  if (size >= kMappedFrom) {
    munmap(p, size);
    return;
  }
  SmallPool& pool = pools()[class_of(size)];
  std::lock_guard lk(pool.mutex);
  pool.free.push_back(p);
}

}  // namespace untorn
