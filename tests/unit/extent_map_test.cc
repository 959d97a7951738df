// Tests of cache/ExtentMap and cache/MappedDevice: lazy probing, L-honest holes, cookies
// that move with every change, probes that race a change, bounded memory, and a model
// check that the map never calls data zero.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "cache/extent_map.h"
#include "cache/mapped_device.h"
#include "device/backing_file.h"
#include "device/forwarding_device.h"
#include "tests/support/failing_operator_new.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_data.h"

namespace untorn {
namespace {

using testing::pattern;
using testing::TempDir;

constexpr uint64_t kMiB = uint64_t{1} << 20;

// Forwards to a device, with two windows a test can widen:
//   on_probe      once, after an allocation probe has its answer (a change lands while
//                 the probe is on its way back);
//   after_change  after each write and zero has reached the device, before it returns
//                 (its data is on the device but the change has not ended: only
//                 begin_change's "data" keeps a reader from calling it a hole).
class HookedDevice final : public ForwardingDevice {
 public:
  explicit HookedDevice(BlockDevice& inner) : ForwardingDevice(inner) {}
  std::function<void()> on_probe, after_change;

  Extent allocation_at(uint64_t o, uint64_t limit) override {
    Extent e = ForwardingDevice::allocation_at(o, limit);
    if (auto f = std::exchange(on_probe, nullptr)) f();
    return e;
  }
  void write(uint64_t o, std::span<const std::byte> src) override {
    ForwardingDevice::write(o, src);
    if (after_change) after_change();
  }
  void write_zeroes(uint64_t o, uint64_t n, ZeroOptions options) override {
    ForwardingDevice::write_zeroes(o, n, options);
    if (after_change) after_change();
  }
};

class ExtentMapTest : public ::testing::Test {
 protected:
  void open(uint64_t size) {
    Config::Backing b;
    b.path = dir_.file("d.img");
    b.size = size;
    dev_ = BackingFile::open(b, 4096);
  }
  bool reads_zero(uint64_t offset, uint64_t length) {
    std::vector<std::byte> v(length);
    dev_->read(offset, v);
    return std::all_of(v.begin(), v.end(), [](std::byte b) { return b == std::byte{0}; });
  }

  // Walks [from, to) through the map: each mapping valid, data exactly where `written`
  // (per 4K block) says, hole elsewhere, and ending where that changes.
  static void expect_written_blocks_are_data(ExtentMap& map, const std::vector<bool>& written,
                                             uint64_t from, uint64_t to) {
    for (uint64_t at = from; at < to;) {
      auto m = map.map(at, to);
      ASSERT_TRUE(map.still_valid(m));
      const uint64_t b = at / 4096;
      ASSERT_EQ(m.state, written[b] ? Allocation::data : Allocation::hole) << at;
      uint64_t e = b;
      while (e < written.size() && written[e] == written[b]) ++e;
      ASSERT_EQ(m.end(), std::min(to, e * 4096)) << at;
      at = m.end();
    }
  }

  TempDir dir_;
  std::unique_ptr<BackingFile> dev_;
};

TEST_F(ExtentMapTest, OneProbeMapsAWholeExtentAndLaterLookupsNeedNone) {
  open(256 * kMiB);
  dev_->write(kMiB, pattern(65536, 1));
  dev_->write(3 * kMiB, pattern(4096, 2));
  ExtentMap map(*dev_, 4096, {});
  auto m = map.map(0, 256 * kMiB);
  EXPECT_EQ(m.offset, 0u);
  EXPECT_EQ(m.length, kMiB);
  EXPECT_EQ(m.state, Allocation::hole);
  EXPECT_TRUE(map.still_valid(m));
  EXPECT_EQ(map.stats().probes, 2u);  // the hole, and the data run after it
  auto d = map.map(kMiB, 256 * kMiB);
  EXPECT_EQ(d.state, Allocation::data);
  EXPECT_EQ(d.length, 65536u);
  EXPECT_EQ(map.stats().probes, 2u);  // known already
  EXPECT_FALSE(map.lookup(kMiB + 65536, 256 * kMiB).has_value());  // not probed yet
  auto h = map.map(kMiB + 65536, 256 * kMiB);
  EXPECT_EQ(h.state, Allocation::hole);
  EXPECT_EQ(h.end(), 3 * kMiB);
  // Clipped to what was asked.
  EXPECT_EQ(map.map(0, 4096).length, 4096u);
}

TEST_F(ExtentMapTest, AHoleNeverCoversPartOfALogicalBlock) {
  open(4 * kMiB);
  dev_->write(65536 + 8192, pattern(4096, 3));  // inside the second 64K block
  ExtentMap map(*dev_, 65536, {});
  auto h = map.map(0, 4 * kMiB);
  EXPECT_EQ(h.state, Allocation::hole);
  EXPECT_EQ(h.length, 65536u);
  auto d = map.map(65536, 4 * kMiB);
  EXPECT_EQ(d.state, Allocation::data);
  EXPECT_EQ(d.length, 65536u);  // the whole partly allocated block
  EXPECT_EQ(map.map(131072, 4 * kMiB).state, Allocation::hole);
}

TEST_F(ExtentMapTest, EveryChangeInvalidatesTheMappingsOfItsShardOnly) {
  open(256 * kMiB);
  ExtentMap map(*dev_, 4096, {.max_bytes = 4 * kMiB, .shard_bytes = 64 * kMiB});
  auto here = map.map(0, 64 * kMiB);
  auto there = map.map(128 * kMiB, 192 * kMiB);
  map.begin_change(32 * kMiB, 4096);
  EXPECT_FALSE(map.still_valid(here));
  EXPECT_TRUE(map.still_valid(there));
  // While the change runs its range reads as data; a mapping taken now dies at its end.
  auto during = map.lookup(32 * kMiB, 64 * kMiB);
  ASSERT_TRUE(during.has_value());
  EXPECT_EQ(during->state, Allocation::data);
  auto before_range = map.lookup(0, 64 * kMiB);
  ASSERT_TRUE(before_range.has_value());
  EXPECT_TRUE(map.still_valid(*before_range));
  map.end_change(32 * kMiB, 4096, Allocation::data);
  EXPECT_FALSE(map.still_valid(*during));
  EXPECT_FALSE(map.still_valid(*before_range));
  EXPECT_TRUE(map.still_valid(there));
  auto after = map.map(0, 64 * kMiB);
  EXPECT_TRUE(map.still_valid(after));
  EXPECT_EQ(after.end(), 32 * kMiB);
}

TEST_F(ExtentMapTest, ProbeRacingAChangeIsNeverStored) {
  open(64 * kMiB);
  HookedDevice racing(*dev_);
  ExtentMap map(racing, 4096, {});
  const auto data = pattern(4096, 4);
  // The probe sees a hole; before it is stored, a write lands there.
  racing.on_probe = [&] {
    map.begin_change(0, 4096);
    dev_->write(0, data);
    map.end_change(0, 4096, Allocation::data);
  };
  auto stale = map.map(0, 64 * kMiB);
  EXPECT_EQ(stale.state, Allocation::hole);  // what the probe saw...
  EXPECT_FALSE(map.still_valid(stale));      // ...is never valid
  EXPECT_EQ(map.stats().stale_probes, 1u);
  auto now = map.map(0, 64 * kMiB);
  EXPECT_EQ(now.state, Allocation::data);
  EXPECT_EQ(now.length, 4096u);
}

TEST_F(ExtentMapTest, AProbeWhileAChangeRunsIsHandedOutInvalid) {
  open(64 * kMiB);
  ExtentMap map(*dev_, 4096, {});
  map.begin_change(8 * kMiB, 4096);
  auto m = map.map(0, 64 * kMiB);
  EXPECT_FALSE(map.still_valid(m));
  EXPECT_FALSE(map.lookup(0, 64 * kMiB).has_value());  // not stored
  map.end_change(8 * kMiB, 4096, std::nullopt);
  EXPECT_TRUE(map.still_valid(map.map(0, 64 * kMiB)));
}

TEST_F(ExtentMapTest, AFailedChangeForgetsItsRange) {
  open(64 * kMiB);
  ExtentMap map(*dev_, 4096, {});
  EXPECT_EQ(map.map(0, 64 * kMiB).state, Allocation::hole);
  map.begin_change(0, 65536);
  map.end_change(0, 65536, std::nullopt);
  EXPECT_FALSE(map.lookup(0, 64 * kMiB).has_value());
  EXPECT_TRUE(map.lookup(65536, 64 * kMiB).has_value());
}

TEST_F(ExtentMapTest, ZeroesMakeWholeBlocksZeroOrHoleAndLeavePartialBlocksData) {
  open(16 * kMiB);
  dev_->write(0, pattern(kMiB, 5));
  ExtentMap map(*dev_, 4096, {});
  MappedDevice mapped(*dev_, map);
  EXPECT_EQ(map.map(0, 16 * kMiB).state, Allocation::data);
  mapped.write_zeroes(6144, 16384, {});  // blocks 8K..20K whole, 4K..8K and 20K..24K in part
  auto edge = map.lookup(4096, 16 * kMiB);
  ASSERT_TRUE(edge.has_value());
  EXPECT_EQ(edge->state, Allocation::data);
  EXPECT_EQ(edge->end(), 8192u);
  auto zero = map.lookup(8192, 16 * kMiB);
  ASSERT_TRUE(zero.has_value());
  EXPECT_EQ(zero->state, Allocation::zero);
  EXPECT_EQ(zero->end(), 20480u);
  EXPECT_EQ(map.lookup(20480, 16 * kMiB)->state, Allocation::data);
  mapped.write_zeroes(65536, 65536, {.may_punch = true, .fast_only = false});
  EXPECT_EQ(map.lookup(65536, 16 * kMiB)->state, Allocation::hole);
  EXPECT_TRUE(reads_zero(65536, 65536));
  mapped.write(65536 + 4096, pattern(4096, 6));
  EXPECT_EQ(map.lookup(65536, 16 * kMiB)->end(), 65536u + 4096);
  EXPECT_EQ(map.lookup(65536 + 4096, 16 * kMiB)->state, Allocation::data);
}

TEST_F(ExtentMapTest, MemoryStaysBoundedAndAnswersStayRight) {
  open(128 * kMiB);
  for (uint64_t at = 0; at < 128 * kMiB; at += 65536) dev_->write(at, pattern(4096, at));
  // 32 shards of 4 MiB, each cut into 128 runs (so held as a 256-byte bitmap), in 2 KiB:
  // no more than 8 of them known at once.
  constexpr uint64_t kBound = 2048;
  ExtentMap map(*dev_, 4096, {.max_bytes = kBound, .shard_bytes = 4 * kMiB});
  const uint64_t fixed = map.stats().memory_bytes;  // the shards themselves
  uint64_t most_bitmaps = 0;
  for (int pass = 0; pass < 2; ++pass) {
    for (uint64_t at = 0; at < 128 * kMiB;) {
      auto m = map.map(at, 128 * kMiB);
      const bool data = at % 65536 == 0;
      ASSERT_EQ(m.state, data ? Allocation::data : Allocation::hole) << at;
      ASSERT_EQ(m.end(), data ? at + 4096 : (at / 65536 + 1) * 65536) << at;
      ASSERT_LE(map.stats().memory_bytes - fixed, kBound) << at;
      most_bitmaps = std::max(most_bitmaps, map.stats().bitmaps);
      at = m.end();
    }
  }
  EXPECT_GT(map.stats().dropped_shards, 0u);
  EXPECT_GE(most_bitmaps, 2u);
}

// Random 4K writes into a probed hole cut a shard into thousands of runs: it is held as
// one fixed bitmap (2 bits a block), and answers stay exact.
TEST_F(ExtentMapTest, AFragmentedShardCostsOneBitmapAndAnswersStayExact) {
  open(64 * kMiB);
  ExtentMap map(*dev_, 4096, {.max_bytes = 4 * kMiB, .shard_bytes = 64 * kMiB});
  MappedDevice mapped(*dev_, map);
  ASSERT_EQ(map.map(0, 64 * kMiB).state, Allocation::hole);
  std::mt19937_64 rng(11);
  std::vector<bool> written(64 * kMiB / 4096);
  for (int i = 0; i < 3000; ++i) {
    const uint64_t block = rng() % written.size();
    mapped.write(block * 4096, pattern(4096, block));
    written[block] = true;
  }
  const ExtentMap::Stats st = map.stats();
  EXPECT_EQ(st.bitmaps, 1u);
  EXPECT_EQ(st.entries, 0u);
  EXPECT_EQ(st.probes, 1u);  // every change was recorded; nothing needed probing again
  expect_written_blocks_are_data(map, written, 0, 64 * kMiB);
  EXPECT_EQ(map.stats().probes, 1u);
}

// The last shard of a device that is not a multiple of the shard size, held as a bitmap
// whose last word is partial: every granule to the device's end answers exactly.
TEST_F(ExtentMapTest, AShortLastShardHeldAsABitmapAnswersExactly) {
  constexpr uint64_t kSize = 6 * kMiB + 4096;  // shards of 4 MiB: the last one 513 blocks
  open(kSize);
  ExtentMap map(*dev_, 4096, {.max_bytes = 4 * kMiB, .shard_bytes = 4 * kMiB});
  MappedDevice mapped(*dev_, map);
  ASSERT_EQ(map.map(4 * kMiB, kSize).state, Allocation::hole);
  std::vector<bool> written(kSize / 4096);
  std::mt19937_64 rng(13);
  for (int i = 0; i < 200; ++i) {
    const uint64_t block = 1024 + rng() % 513;
    mapped.write(block * 4096, pattern(4096, block));
    written[block] = true;
  }
  mapped.write(kSize - 4096, pattern(4096, 99));  // the device's very last block
  written.back() = true;
  ASSERT_EQ(map.stats().bitmaps, 1u);
  expect_written_blocks_are_data(map, written, 4 * kMiB, kSize);
  EXPECT_EQ(map.stats().probes, 1u);
}

// Memory for the map runs out at each allocation point of a change in turn (a run split,
// the switch to a bitmap, a whole-shard run): the change still begins and ends (so later
// probes are stored again), the shard forgets what it knew (never a wrong answer), and
// the memory count stays exact.
TEST_F(ExtentMapTest, AnAllocationFailureForgetsTheShardAndKeepsTheCountsExact) {
  constexpr uint64_t kSize = 16 * kMiB;  // 4 shards of 4 MiB, 256-byte bitmaps
  open(kSize);
  dev_->write(8 * kMiB, pattern(4096, 1));
  int failures_seen = 0;
  for (long fail_at = 0; fail_at < 8; ++fail_at) {
    SCOPED_TRACE("allocation " + std::to_string(fail_at) + " fails");
    ExtentMap map(*dev_, 4096, {.max_bytes = 4 * kMiB, .shard_bytes = 4 * kMiB});
    const uint64_t fixed = map.stats().memory_bytes;
    ASSERT_EQ(map.map(0, 4 * kMiB).state, Allocation::hole);
    // Shard 0 cut into a list just short of its limit (4 runs for a 256-byte bitmap).
    map.begin_change(4096, 4096);
    map.end_change(4096, 4096, Allocation::data);
    ASSERT_EQ(map.stats().entries, 3u);
    const uint64_t dropped_before = map.stats().dropped_shards;
    allocations_until_failure = fail_at;
    for (uint64_t b = 3; b < 9; b += 2) {  // each write splits the hole again
      map.begin_change(b * 4096, 4096);
      map.end_change(b * 4096, 4096, Allocation::zero);
    }
    map.begin_change(0, 4 * kMiB);  // a whole shard at once
    map.end_change(0, 4 * kMiB, Allocation::data);
    const bool failed = std::exchange(allocation_failed, false);
    allocations_until_failure = -1;
    if (failed) {
      ++failures_seen;
      EXPECT_GT(map.stats().dropped_shards, dropped_before);
    }
    // Whatever is known of shard 0 is right: data, or unknown (then probed: data, since
    // the device holds none of what the map was told; a probe stored now and valid shows
    // no change was left open).
    auto m = map.map(0, 4 * kMiB);
    EXPECT_TRUE(map.still_valid(m));
    EXPECT_TRUE(m.state == Allocation::data || m.state == Allocation::hole);
    // The count is exact: every shard made one run by a whole-shard change costs one
    // node, nothing else is held.
    for (uint64_t at = 0; at < kSize; at += 4 * kMiB) {
      map.begin_change(at, 4 * kMiB);
      map.end_change(at, 4 * kMiB, Allocation::data);
    }
    EXPECT_EQ(map.stats().memory_bytes - fixed, 4 * ShardAllocation::kRunBytes);
    EXPECT_EQ(map.stats().entries, 4u);
    EXPECT_EQ(map.stats().bitmaps, 0u);
    auto d = map.map(8 * kMiB, kSize);
    EXPECT_TRUE(map.still_valid(d));
    EXPECT_EQ(d.state, Allocation::data);
  }
  // Four allocations, each failed once: the split's tail, the new run, the bitmap and the
  // whole-shard run of begin_change (end_change finds the shard data already, unless that
  // one failed: then it allocates the run itself, a fifth point reached only then).
  EXPECT_EQ(failures_seen, 4);
}

// Two writers (each in 64 KiB stripes of its own: changes of one range never run at
// once) write, zero and punch through the MappedDevice while two readers map and read,
// under a byte bound so small that shards turn into bitmaps and are dropped all along:
// whatever the map calls hole or zero with a cookie still valid after the read, read as
// zeroes (E1 under concurrency; run under TSan in CI too). Each change lingers, its data
// on the device, until the readers have looked twice more.
TEST_F(ExtentMapTest, ConcurrentChangesAndLookupsUnderASmallBoundNeverCallDataZero) {
  constexpr uint64_t kSize = 32 * kMiB, kStripe = 65536;
  open(kSize);
  HookedDevice lingering(*dev_);
  ExtentMap map(lingering, 4096, {.max_bytes = 1024, .shard_bytes = 4 * kMiB});
  MappedDevice mapped(lingering, map);
  std::atomic<int> writers_left{2};
  std::array<std::atomic<uint64_t>, 2> changing_at{};  // each writer's latest change
  std::atomic<uint64_t> lookups{0};  // by the readers, so far
  // Each change lingers until the readers have made two more lookups (they run until
  // both writers are done, so they are running now, unless one failed).
  std::atomic<int> readers_left{2};
  lingering.after_change = [&] {
    for (const uint64_t start = lookups.load(); lookups.load() < start + 2 && readers_left.load() > 0;)
      std::this_thread::yield();
  };
  std::atomic<uint64_t> most_bitmaps{0};
  auto writer = [&](uint64_t parity, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (int op = 0; op < 600; ++op) {
      const uint64_t stripe = 2 * (rng() % (kSize / kStripe / 2)) + parity;
      const uint64_t first = rng() % 16, blocks = 1 + rng() % (16 - first);
      const uint64_t off = stripe * kStripe + first * 4096, len = blocks * 4096;
      changing_at[parity].store(off);
      switch (rng() % 4) {
        case 0:
        case 1: mapped.write(off, pattern(len, seed * 1000 + static_cast<uint64_t>(op) + 1)); break;
        case 2: mapped.write_zeroes(off, len, {}); break;
        default: mapped.write_zeroes(off, len, {.may_punch = true, .fast_only = false}); break;
      }
      const uint64_t b = map.stats().bitmaps;
      for (uint64_t m = most_bitmaps.load(); b > m && !most_bitmaps.compare_exchange_weak(m, b);) {
      }
    }
    writers_left.fetch_sub(1);
  };
  std::atomic<uint64_t> checked{0};
  auto reader = [&](uint64_t seed) {
    struct Leaving {  // also when an assertion returns early: no writer lingers forever
      std::atomic<int>& left;
      ~Leaving() { left.fetch_sub(1); }
    } leaving{readers_left};
    std::mt19937_64 rng(seed);
    std::vector<std::byte> buf(kStripe);
    for (; writers_left.load() > 0; lookups.fetch_add(1)) {
      // Half the lookups where a writer is changing the allocation now.
      const uint64_t at = rng() % 2 ? changing_at[rng() % 2].load() : 4096 * (rng() % (kSize / 4096));
      const ExtentMap::Mapping m = map.map(at, kSize);
      if (m.state == Allocation::data) continue;
      const uint64_t n = std::min<uint64_t>(m.length, kStripe);
      dev_->read(m.offset, {buf.data(), n});
      if (!map.still_valid(m)) continue;  // a change began meanwhile: the answer is void
      checked.fetch_add(1);
      ASSERT_TRUE(std::all_of(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n),
                              [](std::byte x) { return x == std::byte{0}; }))
          << to_string(m.state) << " at " << m.offset << " holds data";
    }
  };
  std::thread w0(writer, 0, 21), w1(writer, 1, 22), r0(reader, 23), r1(reader, 24);
  w0.join();
  w1.join();
  r0.join();
  r1.join();
  EXPECT_GT(checked.load(), 0u);
  EXPECT_GT(most_bitmaps.load(), 0u);
  EXPECT_GT(map.stats().dropped_shards, 0u);
}

// A change whose range is not on multiples of L, handed to the map as it came (as
// MappedDevice does): the blocks it covers only in part stay data, whatever the result.
TEST_F(ExtentMapTest, AnUnalignedChangeLeavesItsPartialBlocksData) {
  open(16 * kMiB);
  ExtentMap map(*dev_, 4096, {});
  ASSERT_EQ(map.map(0, 16 * kMiB).state, Allocation::hole);
  map.begin_change(6144, 16384);  // blocks 4K..8K and 20K..24K in part, 8K..20K whole
  auto during = map.lookup(4096, 16 * kMiB);
  ASSERT_TRUE(during.has_value());
  EXPECT_EQ(during->state, Allocation::data);
  EXPECT_EQ(during->end(), 24576u);
  map.end_change(6144, 16384, Allocation::zero);
  for (uint64_t edge : {uint64_t{4096}, uint64_t{20480}}) {
    auto m = map.lookup(edge, 16 * kMiB);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->state, Allocation::data) << edge;
    EXPECT_EQ(m->end(), edge + 4096) << edge;
  }
  auto middle = map.lookup(8192, 16 * kMiB);
  ASSERT_TRUE(middle.has_value());
  EXPECT_EQ(middle->state, Allocation::zero);
  EXPECT_EQ(middle->end(), 20480u);
}

// Random writes, zeroes and punches through the MappedDevice: whatever the map says is
// hole or zero reads as zeroes on the device, every time (E1 at the map's level).
TEST_F(ExtentMapTest, RandomChangesNeverLeaveDataCalledZero) {
  open(32 * kMiB);
  ExtentMap map(*dev_, 4096, {.max_bytes = 32 * 1024, .shard_bytes = 4 * kMiB});
  MappedDevice mapped(*dev_, map);
  std::mt19937_64 rng(7);
  for (int op = 0; op < 400; ++op) {
    const uint64_t len = 4096 * (1 + rng() % 64);
    const uint64_t off = 4096 * (rng() % (32 * kMiB / 4096 - len / 4096));
    switch (rng() % 3) {
      case 0: mapped.write(off, pattern(len, static_cast<uint64_t>(op) + 1)); break;
      case 1: mapped.write_zeroes(off, len, {}); break;
      default: mapped.write_zeroes(off, len, {.may_punch = true, .fast_only = false}); break;
    }
    for (int q = 0; q < 8; ++q) {
      const uint64_t at = 4096 * (rng() % (32 * kMiB / 4096));
      auto m = map.map(at, 32 * kMiB);
      ASSERT_TRUE(map.still_valid(m));
      if (m.state != Allocation::data) {
        ASSERT_TRUE(reads_zero(m.offset, m.length)) << "op " << op << " at " << at;
      }
    }
  }
  EXPECT_GT(map.stats().hits, 0u);
  EXPECT_GT(map.stats().bitmaps, 0u);  // both forms of a shard were exercised
}

}  // namespace
}  // namespace untorn
