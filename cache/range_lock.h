// cache/range_lock.h — shared/exclusive locks on byte ranges of the device.
//
// Owns: 64 shards, each a mutex, a condition variable and the ranges held in it. The
// address space is cut into 1 MiB stripes; stripe s belongs to shard s % 64, so requests
// on different regions never touch the same mutex, and there is no global lock.
// A lock on [offset, offset+length) takes its part of every stripe it covers, in
// increasing stripe order (so two locks never wait for each other in a cycle), waiting in
// each while a conflicting range (any overlap with an exclusive holder, on either side)
// is held. No mutex is held across I/O: only the record of the range is.
// This is what keeps promise A1 (no torn reads) on the direct path: writes hold their
// range exclusive, reads shared (tests: RangeLockTest.*, IntegrationTest.NoTornReads).
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace untorn {

class RangeLock {
 public:
  enum class Mode { shared, exclusive };

  // Holds a range until destroyed. Must not outlive the RangeLock that made it.
  class Guard {
   public:
    Guard(Guard&& other) noexcept;
    Guard& operator=(Guard&&) = delete;
    Guard(const Guard&) = delete;
    ~Guard();

    // Whether this guard holds all of [offset, offset+length) in `mode` (exclusive holds
    // answer for shared too): a witness that callers pass where a hold is required.
    bool holds(uint64_t offset, uint64_t length, Mode mode) const {
      return lock_ && offset >= offset_ && offset + length <= offset_ + length_ &&
             (mode == Mode::shared || mode_ == Mode::exclusive);
    }

   private:
    friend class RangeLock;
    Guard(RangeLock* lock, uint64_t offset, uint64_t length, Mode mode, uint64_t ticket)
        : lock_(lock), offset_(offset), length_(length), mode_(mode), ticket_(ticket) {}
    RangeLock* lock_;
    uint64_t offset_;
    uint64_t length_;
    Mode mode_;
    uint64_t ticket_;
  };

  RangeLock() = default;
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;

  // Blocks until [offset, offset+length) can be held in `mode`. length 0 locks nothing.
  [[nodiscard]] Guard lock(uint64_t offset, uint64_t length, Mode mode);
  // The same without waiting: empty if any part of the range is held in conflict.
  [[nodiscard]] std::optional<Guard> try_lock(uint64_t offset, uint64_t length, Mode mode);

  static constexpr uint64_t kStripe = uint64_t{1} << 20;
  static constexpr size_t kShards = 64;

 private:
  struct Held {
    uint64_t begin, end;  // within one stripe
    Mode mode;
    uint64_t ticket;
  };
  struct Shard {
    std::mutex mutex;
    std::condition_variable released;
    std::vector<Held> held;
  };

  void unlock(uint64_t offset, uint64_t length, uint64_t ticket);
  // Takes every stripe's part in order; without `wait`, gives up (holding nothing) at the
  // first conflict.
  std::optional<Guard> acquire(uint64_t offset, uint64_t length, Mode mode, bool wait);

  std::array<Shard, kShards> shards_;
};

}  // namespace untorn
