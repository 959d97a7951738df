// Tests of the cache's hit path without locks or references (FolioCache::find_held,
// Folio::uptodate_unlocked): a folio, and its region's block table, must never go while a
// request holds a range over it, however hard eviction, trims and region reclamation
// push. Readers check what they copied out block by block: every block of the device
// holds one 8-byte word repeated, naming the block (and a version), or zeroes; a copy from
// a folio freed and reused meanwhile names another block.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/cached_path.h"
#include "tests/support/journaled_backing.h"
#include "tests/support/small_cached_path.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_data.h"

namespace untorn {
namespace {

constexpr uint64_t kDevice = 32 << 20;
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kFolioMax = 64 * 1024;

uint64_t stamp(uint64_t offset, uint64_t version) { return (offset / kBlock) << 32 | version; }

std::vector<std::byte> stamped_block(uint64_t offset, uint64_t version) {
  std::vector<std::byte> v(kBlock);
  const uint64_t word = stamp(offset, version);
  for (size_t i = 0; i < kBlock; i += sizeof word) std::memcpy(v.data() + i, &word, sizeof word);
  return v;
}

// Empty when every block of `got` (read at `offset`) is zeroes or stamped whole with its
// own number; else what is wrong with the first block that is not.
std::string check_blocks(uint64_t offset, const std::vector<std::byte>& got) {
  for (size_t b = 0; b < got.size(); b += kBlock) {
    uint64_t first;
    std::memcpy(&first, got.data() + b, sizeof first);
    for (size_t i = sizeof first; i < kBlock; i += sizeof first) {
      uint64_t w;
      std::memcpy(&w, got.data() + b + i, sizeof w);
      if (w != first) return "block at " + std::to_string(offset + b) + " torn at byte " + std::to_string(i);
    }
    if (first != 0 && first >> 32 != (offset + b) / kBlock)
      return "block at " + std::to_string(offset + b) + " holds block " + std::to_string(first >> 32) +
             "'s data";
  }
  return {};
}

// Two readers hit and miss all over a device eight times the cache (so eviction runs all
// the time) while a writer writes blocks and trims 64K at a time (trims drop folios, and
// regions left empty have their tables freed).
TEST(LocklessHitTest, FoliosAndTablesNeverGoWhileARangeIsHeldOverThem) {
  testing::TempDir dir;
  testing::JournaledBacking stack(dir, kDevice);
  Config::Cache c;
  c.size = kDevice / 8;
  c.folio_max = kFolioMax;
  CachedPath path(*stack.mapped, *stack.map, *stack.writer, c, kBlock, 65536);
  path.start_background();
  for (uint64_t o = 0; o < kDevice; o += kBlock) path.write(o, stamped_block(o, 1), false);

  const int ops = std::getenv("UNTORN_SOAK_OPS") ? 40 * std::atoi(std::getenv("UNTORN_SOAK_OPS")) : 30000;
  std::atomic<bool> failed{false};
  std::vector<std::string> errors(3);
  auto reader = [&](int id) {
    std::mt19937_64 rng(id);
    try {
      for (int i = 0; i < ops && !failed; ++i) {
        // Mostly single blocks; some reads of 16 blocks, across folios and regions.
        const uint64_t blocks = rng() % 4 == 0 ? 16 : 1;
        const uint64_t offset = rng() % (kDevice / kBlock - blocks + 1) * kBlock;
        std::vector<std::byte> got(blocks * kBlock);
        path.read(offset, got);
        if (std::string e = check_blocks(offset, got); !e.empty()) {
          errors[id] = e;
          failed = true;
        }
      }
    } catch (const std::exception& e) {
      errors[id] = e.what();
      failed = true;
    }
  };
  auto writer = [&] {
    std::mt19937_64 rng(99);
    try {
      for (int i = 0; i < ops && !failed; ++i) {
        if (i % 8 == 7) {
          const uint64_t offset = rng() % (kDevice / kFolioMax) * kFolioMax;
          path.trim(offset, kFolioMax, false);
        } else {
          const uint64_t offset = rng() % (kDevice / kBlock) * kBlock;
          path.write(offset, stamped_block(offset, 2 + static_cast<uint64_t>(i)), false);
        }
      }
    } catch (const std::exception& e) {
      errors[2] = e.what();
      failed = true;
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(reader, 0);
  threads.emplace_back(reader, 1);
  threads.emplace_back(writer);
  for (auto& t : threads) t.join();
  for (const std::string& e : errors) EXPECT_EQ(e, "");

  const CacheCounters counters = path.counters();
  EXPECT_GT(counters.evictions, 0u) << "eviction never ran: the test proves nothing";
  // With no range held (writeback's threads stopped: they hold ranges to collect), every
  // empty region's table can go.
  path.shutdown();
  path.folio_cache().reclaim_empty_regions();
  EXPECT_EQ(path.folio_cache().empty_regions(), 0u);
}

using LocklessHitOrderTest = testing::SmallCachedPathTest;
constexpr uint64_t kRegion = 8 << 20;  // a folio_max (2M) region of the small path

// A read found its folio with no reference; eviction must not take it before the read
// has copied it out (else the copy reads freed memory).
TEST_F(LocklessHitOrderTest, AFolioAHitFoundIsNeverEvictedUnderIt) {
  const auto data = testing::pattern(65536, 3);
  path_->write(kRegion, data, false);
  path_->flush();  // clean: only a reference or a held range keeps it from eviction
  path_->race_hooks().after_hit_lookup = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;
    EXPECT_FALSE(path_->folio_cache().evict_to_fit(path_->folio_cache().budget()))
        << "evicted the folio a hit is about to copy from";
    EXPECT_NE(path_->folio_cache().find(kRegion, false), nullptr);
  };
  EXPECT_EQ(read(kRegion + 4096, 4096), std::vector<std::byte>(data.begin() + 4096, data.begin() + 8192));
  path_->race_hooks().after_hit_lookup = nullptr;
  EXPECT_TRUE(path_->folio_cache().evict_to_fit(path_->folio_cache().budget()))
      << "the folio stays unevictable after the read";
}

// A read looked a block up in a region's table; the region's last folio is trimmed away
// meanwhile (elsewhere in the region, out of the read's range). The table must stay until
// the read lets go of its range, then go.
TEST_F(LocklessHitOrderTest, ARegionTableIsNeverFreedUnderAHeldRange) {
  path_->write(kRegion + (1 << 20), testing::pattern(4096, 4), false);
  path_->flush();
  path_->race_hooks().after_hit_lookup = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;
    path_->trim(kRegion + (1 << 20), 65536, false);  // the region's only folio
    EXPECT_EQ(path_->folio_cache().empty_regions(), 1u);
    path_->folio_cache().reclaim_empty_regions();
    EXPECT_EQ(path_->folio_cache().empty_regions(), 1u) << "freed a table a read is using";
  };
  EXPECT_EQ(read(kRegion, 4096), std::vector<std::byte>(4096));  // a hole: no folio made
  path_->race_hooks().after_hit_lookup = nullptr;
  path_->folio_cache().reclaim_empty_regions();
  EXPECT_EQ(path_->folio_cache().empty_regions(), 0u);
}

}  // namespace
}  // namespace untorn
