#include "device/bounce_pool.h"

#include <bit>
#include <utility>

namespace untorn {

BouncePool& BouncePool::instance() {
  static BouncePool pool;
  return pool;
}

BouncePool::BouncePool() {
  // Room for as many buffers of each class as kKeepBytes allows, so give_back never
  // allocates (and so never throws from a Lease's destructor).
  for (unsigned c = 0; c < kClasses; ++c) free_[c].reserve(kKeepBytes >> (c + kMinClassBits));
}

BouncePool::Lease BouncePool::take(size_t size) {
  const unsigned bits = std::max<unsigned>(kMinClassBits, std::bit_width(std::max<size_t>(size, 1) - 1));
  if (bits > kMaxClassBits)
    return Lease(this, AlignedBuffer(size, AlignedBuffer::Uninitialized{}), kClasses);
  const unsigned c = bits - kMinClassBits;
  {
    std::lock_guard lk(mutex_);
    if (!free_[c].empty()) {
      AlignedBuffer b = std::move(free_[c].back());
      free_[c].pop_back();
      idle_bytes_ -= b.size();
      return Lease(this, std::move(b), c);
    }
  }
  return Lease(this, AlignedBuffer(size_t{1} << bits, AlignedBuffer::Uninitialized{}), c);
}

void BouncePool::give_back(AlignedBuffer buffer, unsigned size_class) noexcept {
  if (size_class >= kClasses) return;  // not pooled: freed here
  std::lock_guard lk(mutex_);
  std::vector<AlignedBuffer>& list = free_[size_class];
  if (idle_bytes_ + buffer.size() > kKeepBytes || list.size() == list.capacity()) return;
  idle_bytes_ += buffer.size();
  list.push_back(std::move(buffer));  // within the reserved capacity: no allocation
}

size_t BouncePool::idle_bytes() const {
  std::lock_guard lk(mutex_);
  return idle_bytes_;
}

void BouncePool::drain() {
  std::lock_guard lk(mutex_);
  for (std::vector<AlignedBuffer>& list : free_) list.clear();
  idle_bytes_ = 0;
}

BouncePool::Lease::Lease(Lease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)), buffer_(std::move(other.buffer_)), class_(other.class_) {}

BouncePool::Lease& BouncePool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = std::exchange(other.pool_, nullptr);
    buffer_ = std::move(other.buffer_);
    class_ = other.class_;
  }
  return *this;
}

BouncePool::Lease::~Lease() { release(); }

void BouncePool::Lease::release() noexcept {
  if (pool_ && buffer_.data()) pool_->give_back(std::move(buffer_), class_);
  pool_ = nullptr;
}

}  // namespace untorn
