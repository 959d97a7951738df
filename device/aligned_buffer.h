// device/aligned_buffer.h — an owned, page-aligned byte buffer (zero-initialised unless
// constructed Uninitialized).
//
// Owns its memory (RAII, freed with free()); movable, not copyable. Suitable for O_DIRECT
// I/O as it stands: the start is aligned to kPageSize and the capacity is rounded up to it.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>

namespace untorn {

class AlignedBuffer {
 public:
  static constexpr size_t kPageSize = 4096;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t size) { resize(size); }
  // For buffers that are filled completely before they are read (bounce buffers).
  struct Uninitialized {};
  AlignedBuffer(size_t size, Uninitialized) : zero_fill_(false) { resize(size); }

  // Makes room for at least `size` bytes; the contents are not kept when it grows.
  void resize(size_t size) {
    if (size <= capacity_) {
      size_ = size;
      return;
    }
    size_t capacity = (size + kPageSize - 1) / kPageSize * kPageSize;
    void* p = nullptr;
    if (posix_memalign(&p, kPageSize, capacity) != 0) throw std::bad_alloc();
    if (zero_fill_) std::memset(p, 0, capacity);
    data_.reset(static_cast<std::byte*>(p));
    capacity_ = capacity;
    size_ = size;
  }

  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_.get(), size_}; }
  std::span<const std::byte> span() const { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t capacity_ = 0;
  size_t size_ = 0;
  bool zero_fill_ = true;
};

}  // namespace untorn
