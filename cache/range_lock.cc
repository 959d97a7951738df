#include "cache/range_lock.h"

#include <algorithm>
#include <atomic>
#include <utility>

namespace untorn {
namespace {

std::atomic<uint64_t> next_ticket{1};

}  // namespace

RangeLock::Guard::Guard(Guard&& other) noexcept
    : lock_(std::exchange(other.lock_, nullptr)),
      offset_(other.offset_),
      length_(other.length_),
      mode_(other.mode_),
      ticket_(other.ticket_) {}

RangeLock::Guard::~Guard() {
  if (lock_) lock_->unlock(offset_, length_, ticket_);
}

std::optional<RangeLock::Guard> RangeLock::acquire(uint64_t offset, uint64_t length, Mode mode,
                                                   bool wait) {
  const uint64_t ticket = next_ticket.fetch_add(1, std::memory_order_relaxed);
  if (length == 0) return Guard(nullptr, offset, 0, mode, ticket);
  const uint64_t end = offset + length;
  for (uint64_t stripe = offset / kStripe; stripe * kStripe < end; ++stripe) {
    const uint64_t begin = std::max(offset, stripe * kStripe);
    const uint64_t stop = std::min(end, (stripe + 1) * kStripe);
    Shard& shard = shards_[stripe % kShards];
    std::unique_lock lk(shard.mutex);
    auto free = [&] {
      return std::none_of(shard.held.begin(), shard.held.end(), [&](const Held& h) {
        bool overlaps = h.begin < stop && begin < h.end;
        return overlaps && (mode == Mode::exclusive || h.mode == Mode::exclusive);
      });
    };
    if (wait) {
      shard.released.wait(lk, free);
    } else if (!free()) {
      lk.unlock();
      unlock(offset, begin - offset, ticket);  // give back the stripes taken so far
      return std::nullopt;
    }
    try {
      shard.held.push_back({begin, stop, mode, ticket});
    } catch (...) {  // out of memory: holding part of the range would block it for good
      lk.unlock();
      unlock(offset, begin - offset, ticket);
      throw;
    }
  }
  return Guard(this, offset, length, mode, ticket);
}

RangeLock::Guard RangeLock::lock(uint64_t offset, uint64_t length, Mode mode) {
  return std::move(*acquire(offset, length, mode, true));
}

std::optional<RangeLock::Guard> RangeLock::try_lock(uint64_t offset, uint64_t length, Mode mode) {
  return acquire(offset, length, mode, false);
}

void RangeLock::unlock(uint64_t offset, uint64_t length, uint64_t ticket) {
  if (length == 0) return;  // (a try_lock that failed at its first stripe: nothing taken)
  const uint64_t end = offset + length;
  for (uint64_t stripe = offset / kStripe; stripe * kStripe < end; ++stripe) {
    Shard& shard = shards_[stripe % kShards];
    {
      std::lock_guard lk(shard.mutex);
      auto it = std::find_if(shard.held.begin(), shard.held.end(),
                             [&](const Held& h) { return h.ticket == ticket; });
      if (it != shard.held.end()) {
        *it = shard.held.back();
        shard.held.pop_back();
      }
    }
    shard.released.notify_all();
  }
}

}  // namespace untorn
