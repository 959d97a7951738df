#include "cache/range_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/failing_operator_new.h"

namespace untorn {
namespace {

// Out of memory recording the second stripe of a lock: the lock throws and holds nothing
// (the first stripe's record kept would block that range for good; eviction try_locks
// folios spanning two stripes all the time).
TEST(RangeLockTest, AnAllocationFailureMidLockHoldsNothing) {
  const uint64_t at = RangeLock::kStripe - 4096;  // [at, at + 8192) spans two stripes
  for (int wait : {0, 1})
    for (RangeLock::Mode mode : {RangeLock::Mode::exclusive, RangeLock::Mode::shared}) {
      RangeLock locks;  // fresh: each stripe's first record allocates
      allocations_until_failure = 1;  // the first stripe's record, then fail
      if (wait) EXPECT_THROW((void)locks.lock(at, 8192, mode), std::bad_alloc);
      else EXPECT_THROW((void)locks.try_lock(at, 8192, mode), std::bad_alloc);
      allocations_until_failure = -1;
      EXPECT_TRUE(std::exchange(allocation_failed, false));
      EXPECT_TRUE(locks.try_lock(at, 4096, RangeLock::Mode::exclusive).has_value())
          << "the first stripe stayed held";
    }
}

TEST(RangeLockTest, SharedHoldersCoexist) {
  RangeLock locks;
  auto a = locks.lock(0, 8192, RangeLock::Mode::shared);
  EXPECT_TRUE(locks.try_lock(4096, 8192, RangeLock::Mode::shared).has_value());
  // Shared holders still keep writers out, so the test above can fail.
  EXPECT_FALSE(locks.try_lock(4096, 4096, RangeLock::Mode::exclusive).has_value());
}

TEST(RangeLockTest, DisjointExclusiveRangesCoexistAcrossStripes) {
  RangeLock locks;
  auto a = locks.lock(0, RangeLock::kStripe + 4096, RangeLock::Mode::exclusive);
  auto b = locks.try_lock(RangeLock::kStripe + 4096, 3 * RangeLock::kStripe, RangeLock::Mode::exclusive);
  EXPECT_TRUE(b.has_value());
  auto c = locks.try_lock(64 * RangeLock::kStripe, 4096, RangeLock::Mode::exclusive);  // same shard as 0
  EXPECT_TRUE(c.has_value());
  // One byte of overlap with `a` (in the second stripe) is a conflict.
  EXPECT_FALSE(locks.try_lock(RangeLock::kStripe + 4095, 2, RangeLock::Mode::shared).has_value());
  EXPECT_FALSE(locks.try_lock(64 * RangeLock::kStripe, 1, RangeLock::Mode::shared).has_value());
}

TEST(RangeLockTest, ReleasedRangeCanBeRetaken) {
  RangeLock locks;
  {
    auto a = locks.lock(0, 4096, RangeLock::Mode::exclusive);
    EXPECT_FALSE(locks.try_lock(0, 4096, RangeLock::Mode::exclusive).has_value());
  }
  EXPECT_TRUE(locks.try_lock(0, 4096, RangeLock::Mode::exclusive).has_value());
}

TEST(RangeLockTest, TryLockGivesUpWholeAtAConflictInALaterStripe) {
  RangeLock locks;
  const uint64_t S = RangeLock::kStripe;
  auto held = locks.lock(S + 4096, 4096, RangeLock::Mode::exclusive);
  EXPECT_FALSE(locks.try_lock(0, 2 * S, RangeLock::Mode::shared).has_value());
  // Nothing of the failed attempt is left behind in the first stripe.
  EXPECT_TRUE(locks.try_lock(0, S, RangeLock::Mode::exclusive).has_value());
  EXPECT_TRUE(locks.try_lock(S, 4096, RangeLock::Mode::shared).has_value());  // no overlap
  auto shared = locks.lock(0, 4096, RangeLock::Mode::shared);
  EXPECT_TRUE(locks.try_lock(0, 4096, RangeLock::Mode::shared).has_value());
  EXPECT_FALSE(locks.try_lock(0, 4096, RangeLock::Mode::exclusive).has_value());
}

// Many threads take random overlapping ranges; each block records who is inside. An
// exclusive holder must find its blocks empty, a shared one must find no exclusive
// holder. Ranges cross stripe boundaries, so multi-stripe ordering is exercised too.
TEST(RangeLockTest, ExclusiveHoldersNeverOverlapUnderContention) {
  constexpr uint64_t kBlock = 64 * 1024;
  constexpr size_t kBlocks = 64;  // 4 MiB: four stripes
  RangeLock locks;
  std::vector<std::atomic<int>> readers(kBlocks), writers(kBlocks);
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u);
      for (int i = 0; i < 3000; ++i) {
        size_t first = rng() % kBlocks;
        size_t count = 1 + rng() % std::min<size_t>(20, kBlocks - first);
        bool exclusive = rng() % 2;
        auto guard = locks.lock(first * kBlock, count * kBlock,
                                exclusive ? RangeLock::Mode::exclusive : RangeLock::Mode::shared);
        for (size_t b = first; b < first + count; ++b) {
          if (exclusive) {
            if (writers[b].fetch_add(1) != 0 || readers[b].load() != 0) ++violations;
          } else {
            readers[b].fetch_add(1);
            if (writers[b].load() != 0) ++violations;
          }
        }
        std::this_thread::yield();
        for (size_t b = first; b < first + count; ++b) (exclusive ? writers[b] : readers[b]).fetch_sub(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(violations.load(), 0);
}

}  // namespace
}  // namespace untorn
