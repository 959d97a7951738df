// Tests of cache/FolioCache's index walks: any_block (what Writeback::wait_idle asks on
// every write) across folio sizes, edges and regions; and of the index out of memory.
#include <gtest/gtest.h>

#include <new>
#include <utility>

#include "cache/cache_stats.h"
#include "cache/folio_cache.h"
#include "tests/support/failing_operator_new.h"

namespace untorn {
namespace {

constexpr uint32_t kBlock = 4096;
constexpr uint64_t kFolioMax = 64 * 1024;

class FolioCacheTest : public ::testing::Test {
 protected:
  FolioCacheTest() : cache_(16 * kFolioMax, kBlock, kFolioMax, 16 * kFolioMax, stats_, locks_) {}

  // A folio made to fit [lo, hi), holding `at`.
  FolioCache::Ref make(uint64_t at, uint64_t lo, uint64_t hi) {
    bool created;
    FolioCache::Ref f = cache_.find_or_create(at, lo, hi, &created);
    EXPECT_TRUE(created);
    return f;
  }
  void set(const FolioCache::Ref& f, uint64_t at, Folio::Bit bit, bool value) {
    std::lock_guard fl(f->mutex());
    f->set(bit, f->block_of(at), f->block_of(at) + 1, value);
  }

  CacheStats stats_;
  RangeLock locks_;
  FolioCache cache_;
};

TEST_F(FolioCacheTest, AnyBlockFindsABitOnlyInsideTheRange) {
  // Region 1 holds a 64K folio; region 2 two 4K ones at its start and an 8K one after a gap;
  // region 4 a 16K one in its middle.
  auto big = make(kFolioMax, kFolioMax, 2 * kFolioMax);
  auto small = make(2 * kFolioMax, 2 * kFolioMax, 2 * kFolioMax + kBlock);
  auto mid = make(2 * kFolioMax + 4 * kBlock, 2 * kFolioMax + 4 * kBlock, 2 * kFolioMax + 6 * kBlock);
  auto next = make(2 * kFolioMax + kBlock, 2 * kFolioMax + kBlock, 2 * kFolioMax + 2 * kBlock);
  auto far = make(4 * kFolioMax + 8 * kBlock, 4 * kFolioMax + 8 * kBlock, 4 * kFolioMax + 12 * kBlock);
  ASSERT_EQ(big->size(), kFolioMax);
  ASSERT_EQ(small->size(), kBlock);
  ASSERT_EQ(mid->size(), 2 * kBlock);
  ASSERT_EQ(far->size(), 4 * kBlock);
  const uint64_t all = 16 * kFolioMax;
  EXPECT_FALSE(cache_.any_block(0, all, Folio::writeback));

  // One block in the middle of the big folio: found by every range covering it, whatever
  // part of the folio the range starts or ends in, and by no other.
  const uint64_t at = kFolioMax + 7 * kBlock;
  set(big, at, Folio::writeback, true);
  EXPECT_TRUE(cache_.any_block(0, all, Folio::writeback));
  EXPECT_TRUE(cache_.any_block(at, kBlock, Folio::writeback));
  EXPECT_TRUE(cache_.any_block(at - 3 * kBlock, 4 * kBlock, Folio::writeback));
  EXPECT_TRUE(cache_.any_block(at, kFolioMax, Folio::writeback));
  EXPECT_FALSE(cache_.any_block(at - 3 * kBlock, 3 * kBlock, Folio::writeback));
  EXPECT_FALSE(cache_.any_block(at + kBlock, 8 * kBlock, Folio::writeback));
  EXPECT_FALSE(cache_.any_block(at, kBlock, Folio::dirty));  // another bit
  set(big, at, Folio::writeback, false);

  // The second folio after a gap in its region, and a folio deep in a later region: a
  // range starting in an empty region or an empty gap still reaches them.
  // A folio right after another: walking on from the first reaches it.
  set(next, next->offset(), Folio::dirty, true);
  EXPECT_TRUE(cache_.any_block(2 * kFolioMax, 2 * kBlock, Folio::dirty));
  EXPECT_FALSE(cache_.any_block(2 * kFolioMax, kBlock, Folio::dirty));
  set(next, next->offset(), Folio::dirty, false);
  set(mid, mid->offset() + kBlock, Folio::dirty, true);
  EXPECT_TRUE(cache_.any_block(2 * kFolioMax + kBlock, 5 * kBlock, Folio::dirty));
  EXPECT_FALSE(cache_.any_block(2 * kFolioMax, 5 * kBlock, Folio::dirty));
  EXPECT_TRUE(cache_.any_block(0, all, Folio::dirty));
  set(far, far->end() - kBlock, Folio::writeback, true);
  EXPECT_TRUE(cache_.any_block(3 * kFolioMax + kBlock, 2 * kFolioMax, Folio::writeback));
  EXPECT_FALSE(cache_.any_block(3 * kFolioMax, kFolioMax + 11 * kBlock, Folio::writeback));
  EXPECT_TRUE(cache_.any_block(far->end() - kBlock, kBlock, Folio::writeback));
  EXPECT_FALSE(cache_.any_block(far->end(), all - far->end(), Folio::writeback));
}

// Regions 1 and 257 share a shard (256 shards): each folio is found by its own range only,
// and a range running past the device's end stops there.
TEST(FolioCacheShardsTest, AnyBlockTellsApartRegionsOfOneShard) {
  CacheStats stats;
  RangeLock locks;
  const uint64_t size = 300 * kFolioMax;
  FolioCache cache(size, kBlock, kFolioMax, size, stats, locks);
  bool created;
  auto one = cache.find_or_create(kFolioMax, kFolioMax, 2 * kFolioMax, &created);
  auto other = cache.find_or_create(257 * kFolioMax, 257 * kFolioMax, 258 * kFolioMax, &created);
  auto last = cache.find_or_create(size - kBlock, size - kBlock, size, &created);
  {
    std::lock_guard fl(other->mutex());
    other->set(Folio::writeback, 3, 4, true);
  }
  {
    std::lock_guard fl(last->mutex());
    last->set(Folio::dirty, 0, 1, true);
  }
  EXPECT_FALSE(cache.any_block(kFolioMax, kFolioMax, Folio::writeback));
  EXPECT_TRUE(cache.any_block(257 * kFolioMax, kFolioMax, Folio::writeback));
  EXPECT_TRUE(cache.any_block(200 * kFolioMax, 100 * kFolioMax, Folio::writeback));
  EXPECT_TRUE(cache.any_block(size - kBlock, 4 * kFolioMax, Folio::dirty));
  EXPECT_FALSE(cache.any_block(size - 2 * kBlock, kBlock, Folio::dirty));
}

// Out of memory at each allocation of making and indexing a folio in a new region (the
// folio, its bitmaps, the index's map node, the directory chunk, the region's block table,
// its map node): the call throws and the index is as before, for the slow lookup and for
// find_held alike; the next call makes the folio. Runs until a call needs no more.
TEST(FolioCacheOutOfMemoryTest, AFailedCreationLeavesTheIndexAsItWas) {
  const uint64_t at = 5 * kFolioMax + 2 * kBlock;
  int failures = 0;
  for (long n = 0;; ++n) {
    CacheStats stats;
    RangeLock locks;
    FolioCache cache(16 * kFolioMax, kBlock, kFolioMax, 16 * kFolioMax, stats, locks);
    bool created = false;
    allocations_until_failure = n;
    try {
      (void)cache.find_or_create(at, at, at + kBlock, &created);
    } catch (const std::bad_alloc&) {
    }
    allocations_until_failure = -1;
    if (!std::exchange(allocation_failed, false)) {
      EXPECT_TRUE(created);
      break;
    }
    ++failures;
    EXPECT_EQ(cache.folio_count(), 0u) << "allocation " << n;
    EXPECT_EQ(cache.used(), 0u) << "allocation " << n;
    EXPECT_EQ(cache.find(at, false), nullptr) << "allocation " << n;
    EXPECT_EQ(cache.find_held(at, false), nullptr) << "allocation " << n;
    EXPECT_EQ(cache.next_folio(0, 16 * kFolioMax), 16 * kFolioMax) << "allocation " << n;
    auto f = cache.find_or_create(at, at, at + kBlock, &created);
    EXPECT_TRUE(created);
    EXPECT_EQ(cache.find_held(at, false), f.get()) << "allocation " << n;
  }
  EXPECT_GE(failures, 5);  // each allocation point was made to fail once
}

}  // namespace
}  // namespace untorn
