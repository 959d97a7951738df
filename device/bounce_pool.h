// device/bounce_pool.h — page-aligned bounce buffers for O_DIRECT, reused across requests.
//
// Owns idle AlignedBuffers in power-of-two size classes (4 KiB to 8 MiB) for the whole
// process. A fresh large buffer costs a page fault per 4 KiB on first touch (the profile of
// uncached 1 MiB writes was dominated by them); a reused one is already mapped.
// take() hands out a Lease (RAII) of at least the size asked; its destructor gives the
// buffer back. Invariants: idle_bytes() <= kKeepBytes (8 MiB: eight 1 MiB requests in
// flight reuse theirs; counted in the memory bound README's cache.size row states) (a buffer that would pass it is
// freed instead); giving back never throws or allocates (every class's free list has its
// room reserved up front); sizes above the largest class are allocated and freed per
// lease, never kept. Thread-safe (one mutex, held only to pop or push a buffer).
// The pool lives until static destruction; no lease may outlive it (the plugin stops
// its threads at unload, before that).
#pragma once

#include <array>
#include <cstddef>
#include <mutex>
#include <vector>

#include "device/aligned_buffer.h"

namespace untorn {

class BouncePool {
 public:
  static constexpr size_t kKeepBytes = size_t{8} << 20;
  static constexpr unsigned kMinClassBits = 12;  // 4 KiB
  static constexpr unsigned kMaxClassBits = 23;  // 8 MiB
  static constexpr unsigned kClasses = kMaxClassBits - kMinClassBits + 1;

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();

    std::byte* data() { return buffer_.data(); }
    size_t capacity() const { return buffer_.size(); }

   private:
    friend class BouncePool;
    Lease(BouncePool* pool, AlignedBuffer buffer, unsigned size_class)
        : pool_(pool), buffer_(std::move(buffer)), class_(size_class) {}
    void release() noexcept;
    BouncePool* pool_ = nullptr;
    AlignedBuffer buffer_;
    unsigned class_ = kClasses;  // kClasses: not pooled
  };

  // The process's pool.
  static BouncePool& instance();

  BouncePool();
  BouncePool(const BouncePool&) = delete;
  BouncePool& operator=(const BouncePool&) = delete;

  // A buffer of at least `size` bytes (contents undefined); may throw std::bad_alloc.
  Lease take(size_t size);
  size_t idle_bytes() const;
  // Frees every idle buffer (tests start from an empty pool with it).
  void drain();

 private:
  void give_back(AlignedBuffer buffer, unsigned size_class) noexcept;

  mutable std::mutex mutex_;
  std::array<std::vector<AlignedBuffer>, kClasses> free_;
  size_t idle_bytes_ = 0;
};

}  // namespace untorn
