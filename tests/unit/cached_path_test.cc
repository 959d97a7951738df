// Tests of the folio cache: folio state, the index, eviction, throttling, writeback,
// FLUSH/FUA and the three modes, on a real backing file and journal.
#include "cache/cached_path.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "device/backing_file.h"
#include "device/recovery.h"
#include "tests/support/journaled_backing.h"
#include "tests/support/sector_stamp.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_data.h"
#include "util/io_error.h"

namespace untorn {
namespace {

using ::testing::HasSubstr;
using untorn::testing::FaultyDevice;
using untorn::testing::TempDir;
using untorn::testing::pattern;

TEST(FolioTest, BitmapsTrackCountsAcrossWords) {
  Folio f(1 << 20, 1 << 20, 4096);  // 256 blocks: four words per bitmap
  std::lock_guard lk(f.mutex());
  EXPECT_EQ(f.blocks(), 256u);
  f.set(Folio::dirty, 60, 130, true);
  EXPECT_EQ(f.dirty_blocks(), 70u);
  EXPECT_EQ(f.find(Folio::dirty, 0, 256), 60u);
  EXPECT_TRUE(f.all(Folio::dirty, 60, 130));
  EXPECT_FALSE(f.any(Folio::dirty, 130, 256));
  f.set(Folio::dirty, 100, 200, true);  // partly set already
  EXPECT_EQ(f.dirty_blocks(), 140u);
  f.set(Folio::dirty, 0, 256, false);
  EXPECT_EQ(f.dirty_blocks(), 0u);
  f.set(Folio::writeback, 255, 256, true);
  EXPECT_EQ(f.writeback_blocks(), 1u);
  EXPECT_EQ(f.find(Folio::writeback, 0, 255), 255u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.data()) % 4096, 0u);  // O_DIRECT-ready
}

TEST(FolioMemoryTest, BlocksArePageAlignedAndSmallOnesAreReused) {
  std::vector<FolioMemory::Block> blocks;
  for (size_t size : {512u, 4096u, 8192u, 32768u, 65536u, 2u << 20}) {
    blocks.push_back(FolioMemory::allocate(size));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(blocks.back().get()) % 4096, 0u) << size;
    std::memset(blocks.back().get(), 0xab, std::max<size_t>(size, 4096));  // all of it is ours
  }
  EXPECT_EQ(FolioMemory::footprint(512), 4096u);
  std::byte* freed = blocks[1].get();
  blocks[1].reset();
  // The 4K lists hand it out again: next, or (when the resident reserve was full, say
  // after another test) once the resident blocks are taken.
  bool reused = false;
  for (size_t i = 0; i <= FolioMemory::kResidentReserve / 4096 && !reused; ++i) {
    blocks.push_back(FolioMemory::allocate(4096));
    reused = blocks.back().get() == freed;
  }
  EXPECT_TRUE(reused);
}

// Resident anonymous memory of this process, from /proc/self/status.
uint64_t rss_anon_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8)) * 1024;
  ADD_FAILURE() << "no RssAnon in /proc/self/status";
  return 0;
}

// Allocates `total` bytes in blocks of `block`, touches them, frees them all: resident
// memory must drop by all of it but the reserve kept for reuse (and 8 MiB of slack).
void expect_freed_blocks_go_back(size_t block, size_t total) {
  std::vector<FolioMemory::Block> blocks;
  for (size_t i = 0; i < total / block; ++i) {
    blocks.push_back(FolioMemory::allocate(block));
    std::memset(blocks.back().get(), 0x5a, block);
  }
  const uint64_t full = rss_anon_bytes();
  blocks.clear();
  const uint64_t after = rss_anon_bytes();
  EXPECT_LE(after + (total - FolioMemory::kResidentReserve - (8 << 20)), full)
      << block << "-byte blocks: resident before the free " << full / 1024 << " KiB, after "
      << after / 1024 << " KiB";
}

TEST(FolioMemoryTest, FreedSmallBlocksGoBackToTheSystemBeyondASmallReserve) {
  // A cache full of 4K folios that a workload of large folios replaces must not keep the
  // 4K blocks resident as well: the budget would be paid twice.
  expect_freed_blocks_go_back(4096, 128 << 20);
  std::vector<FolioMemory::Block> blocks;
  // The blocks are handed out again, usable as before.
  blocks.push_back(FolioMemory::allocate(4096));
  std::memset(blocks.back().get(), 0x5a, 4096);
  EXPECT_EQ(blocks.back().get()[4095], std::byte{0x5a});
}

// Large blocks (their own mappings) are kept mapped for reuse within the reserve: a cache
// that evicts and refills 64K folios must not pay a munmap (TLB shootdown) and fresh page
// faults per folio. Beyond the reserve they go back to the system.
TEST(FolioMemoryTest, FreedLargeBlocksAreReusedWithinTheReserve) {
  FolioMemory::trim();
  std::byte* first;
  {
    FolioMemory::Block a = FolioMemory::allocate(65536);
    std::memset(a.get(), 0x11, 65536);
    first = a.get();
  }
  FolioMemory::Block again = FolioMemory::allocate(65536);
  EXPECT_EQ(again.get(), first) << "a freed 64K block was not reused";
  // Kept mapped, not unmapped and mapped afresh (which would read as zeroes).
  EXPECT_EQ(again.get()[65535], std::byte{0x11}) << "the block came back as fresh memory";
  std::memset(again.get(), 0x22, 65536);
  again.reset();
  expect_freed_blocks_go_back(65536, 96 << 20);
  FolioMemory::trim();
}

TEST(FolioCacheTest, FolioSizeFollowsTheRequestAndNeverOverlaps) {
  CacheStats stats;
  RangeLock locks;
  FolioCache cache(64 << 20, 4096, 2 << 20, 64 << 20, stats, locks);
  bool created;
  // A 4K request gets a 4K folio; a 2M aligned one a 2M folio; a 192K one at 64K gets 64K.
  auto a = cache.find_or_create(8192, 8192, 12288, &created);
  EXPECT_TRUE(created);
  EXPECT_EQ(a->size(), 4096u);
  auto b = cache.find_or_create(4 << 20, 4 << 20, 6 << 20, &created);
  EXPECT_EQ(b->size(), 2u << 20);
  auto c = cache.find_or_create(65536, 65536, 65536 + 196608, &created);
  EXPECT_EQ(c->offset(), 65536u);
  EXPECT_EQ(c->size(), 65536u);
  // Around the existing 4K folio at 8K, a 64K request at 0 gets smaller folios.
  auto d = cache.find_or_create(0, 0, 65536, &created);
  EXPECT_EQ(d->offset(), 0u);
  EXPECT_EQ(d->size(), 8192u);
  EXPECT_EQ(cache.find_or_create(8192, 0, 65536, &created), a);
  EXPECT_FALSE(created);
}

TEST(FolioCacheTest, NextFolioFindsOneStartingAtARegionBoundary) {
  CacheStats stats;
  RangeLock locks;
  FolioCache cache(64 << 20, 4096, 1 << 20, 64 << 20, stats, locks);
  bool created;
  cache.find_or_create(2 << 20, 2 << 20, (2 << 20) + 4096, &created);  // starts a region
  cache.find_or_create((3 << 20) + 8192, (3 << 20) + 8192, (3 << 20) + 12288, &created);
  EXPECT_EQ(cache.next_folio(4096, 8 << 20), 2u << 20);
  EXPECT_EQ(cache.next_folio(2 << 20, 8 << 20), (3u << 20) + 8192);
  EXPECT_EQ(cache.next_folio(4096, 2 << 20), 2u << 20);  // the limit itself is not inside
}

TEST(FolioCacheTest, RacingCreatorsGetOneFolio) {
  CacheStats stats;
  RangeLock locks;
  FolioCache cache(64 << 20, 4096, 2 << 20, 64 << 20, stats, locks);
  std::vector<std::thread> threads;
  std::vector<FolioCache::Ref> got(8);
  std::atomic<int> created_count{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      bool created;
      got[t] = cache.find_or_create(3 << 20, 2 << 20, 4 << 20, &created);
      created_count += created;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(created_count.load(), 1);
  for (auto& g : got) EXPECT_EQ(g, got[0]);
  EXPECT_EQ(cache.folio_count(), 1u);
}

TEST(FolioCacheTest, EvictionNeverTakesDirtyOrUsedFolios) {
  CacheStats stats;
  RangeLock locks;
  FolioCache cache(64 << 20, 4096, 65536, 1 << 20, stats, locks);
  bool created;
  std::vector<FolioCache::Ref> dirty;
  for (uint64_t o = 0; o < (8 << 20); o += 65536) {
    auto f = cache.find_or_create(o, o, o + 65536, &created);
    if ((o / 65536) % 2 == 0) {
      std::lock_guard lk(f->mutex());
      f->set(Folio::dirty, 0, 1, true);
      dirty.push_back(f);
    }
  }
  FolioCache::Ref held = cache.find(65536 * 3);
  EXPECT_FALSE(cache.evict_to_fit(0));  // half is dirty: it cannot get under 1M
  for (auto& f : dirty) EXPECT_EQ(cache.find(f->offset(), false), f);
  EXPECT_EQ(cache.find(65536 * 3, false), held);
  EXPECT_GT(stats.evictions.load(), 0u);
  EXPECT_EQ(cache.folio_count(), dirty.size() + 1);
}

struct PathParams {
  CacheMode mode = CacheMode::writeback;
  uint64_t cache_size = 16 << 20;
  uint64_t folio_max = 2 << 20;
  bool background = true;
};

class CachedPathTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSize = 64 << 20;

  void open(PathParams p = {}) {
    path_.reset();
    stack_.reset();  // releases the backing file's lock before it is opened again
    stack_ = std::make_unique<testing::JournaledBacking>(dir_, kSize);
    device_ = stack_->device.get();
    faulty_ = stack_->faulty.get();
    Config::Cache c;
    c.mode = p.mode;
    c.size = p.cache_size;
    c.folio_max = p.folio_max;
    path_ = std::make_unique<CachedPath>(*stack_->mapped, *stack_->map, *stack_->writer, c, 4096, 65536);
    if (p.background) path_->start_background();
  }
  void TearDown() override { path_.reset(); }

  std::vector<std::byte> read(uint64_t offset, size_t n) {
    std::vector<std::byte> v(n);
    path_->read(offset, v);
    return v;
  }
  std::vector<std::byte> device_bytes(uint64_t offset, size_t n) {
    std::vector<std::byte> v(n);
    device_->read(offset, v);
    return v;
  }

  TempDir dir_;
  std::unique_ptr<testing::JournaledBacking> stack_;
  BackingFile* device_ = nullptr;
  testing::FaultyDevice* faulty_ = nullptr;
  std::unique_ptr<CachedPath> path_;
};

TEST_F(CachedPathTest, WritebackKeepsDataInTheCacheUntilFlush) {
  open({.background = false});
  auto data = pattern(65536, 1);
  path_->write(12288, data, false);
  EXPECT_EQ(read(12288, data.size()), data);
  EXPECT_NE(device_bytes(12288, data.size()), data);  // not written back yet
  EXPECT_EQ(path_->counters().dirty_bytes, 65536u);
  path_->flush();
  EXPECT_EQ(device_bytes(12288, data.size()), data);
  EXPECT_EQ(path_->counters().dirty_bytes, 0u);
  EXPECT_EQ(path_->counters().writeback_bytes, 65536u);
}

TEST_F(CachedPathTest, FuaWritesItsRangeThroughAndWritethroughEveryWrite) {
  open({.background = false});
  auto data = pattern(8192, 2);
  path_->write(0, data, true);
  EXPECT_EQ(device_bytes(0, data.size()), data);
  EXPECT_EQ(path_->counters().dirty_bytes, 0u);
  open({.mode = CacheMode::writethrough, .background = false});
  auto more = pattern(20000, 3);
  path_->write(5000, more, false);  // unaligned: read-modify-write of the edge blocks
  EXPECT_EQ(path_->counters().dirty_bytes, 0u);
  auto dev = device_bytes(0, 32768);
  EXPECT_TRUE(std::equal(more.begin(), more.end(), dev.begin() + 5000));
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 5000, dev.begin()));
}

TEST_F(CachedPathTest, UncachedDropsTheFoliosItCreatedAndReadsDoNotPopulate) {
  open({.mode = CacheMode::uncached, .background = false});
  auto data = pattern(1 << 20, 4);
  path_->write(1 << 20, data, false);
  EXPECT_EQ(device_bytes(1 << 20, data.size()), data);
  EXPECT_EQ(path_->counters().folios, 0u);
  EXPECT_EQ(read(1 << 20, data.size()), data);
  EXPECT_EQ(path_->counters().folios, 0u);
  // Whole blocks with nothing cached: straight to the device, no folio on the way.
  EXPECT_EQ(path_->counters().direct_writes, 1u);
  EXPECT_EQ(path_->counters().cached_bytes, 0u);
  // A partial write needs its edge blocks read: the folio path, folios dropped after.
  auto part = pattern(5000, 9);
  path_->write((1 << 20) + 100, part, true);
  EXPECT_EQ(path_->counters().direct_writes, 1u);
  EXPECT_EQ(path_->counters().folios, 0u);
  auto expect = data;
  std::memcpy(expect.data() + 100, part.data(), part.size());
  EXPECT_EQ(device_bytes(1 << 20, data.size()), expect);
}

TEST_F(CachedPathTest, PartialWriteIntoColdFolioReadsOnlyTheEdgeBlocks) {
  open({.background = false});
  auto base = pattern(65536, 5);
  stack_->mapped->write(0, base);
  auto data = pattern(100, 6);
  path_->write(4096 * 3 + 50, data, false);  // inside one block of a cold range
  auto got = read(0, 65536);
  auto expect = base;
  std::memcpy(expect.data() + 4096 * 3 + 50, data.data(), data.size());
  EXPECT_EQ(got, expect);
}

// A model test: random writes, zeroes, trims, reads and flushes of any alignment under a
// cache small enough to force eviction and writeback; every read matches the model, and
// after a final flush so does the device.
TEST_F(CachedPathTest, RandomOperationsMatchAModelUnderASmallCache) {
  for (CacheMode mode : {CacheMode::writeback, CacheMode::writethrough, CacheMode::uncached}) {
    SCOPED_TRACE(to_string(mode));
    open({.mode = mode, .cache_size = 4 << 20, .folio_max = 256 << 10});
    std::vector<std::byte> model(kSize);
    stack_->mapped->write_zeroes(0, kSize, {});
    std::mt19937_64 rng(42);
    const uint64_t span = 16 << 20;
    for (int op = 0; op < 1500; ++op) {
      const uint64_t len = 1 + rng() % (rng() % 4 == 0 ? (512 << 10) : 70000);
      const uint64_t off = rng() % (span - len);
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 5) {
        auto data = pattern(len, rng());
        path_->write(off, data, rng() % 8 == 0);
        std::memcpy(model.data() + off, data.data(), len);
      } else if (kind < 6) {
        path_->zero(off, len, {}, false);
        std::memset(model.data() + off, 0, len);
      } else if (kind < 7) {
        path_->trim(off, len, false);
        std::memset(model.data() + off, 0, len);
      } else if (kind < 9) {
        auto got = read(off, len);
        ASSERT_TRUE(std::equal(got.begin(), got.end(), model.begin() + off)) << "op " << op;
      } else {
        path_->flush();
      }
    }
    path_->flush();
    EXPECT_LE(path_->counters().cached_bytes, uint64_t{4 << 20} + (1 << 20));
    auto dev = device_bytes(0, span);
    EXPECT_TRUE(std::equal(dev.begin(), dev.end(), model.begin()));
  }
}

// Throttling: 1 GiB of writes through an 8 MiB cache completes, and the data is right.
TEST_F(CachedPathTest, TinyCacheThrottlesWritersAndLosesNothing) {
  open({.cache_size = 8 << 20, .folio_max = 1 << 20});
  // 1 GiB in the plain build; sanitizer builds run a quarter (UNTORN_THROTTLE_PASSES).
  const uint64_t per_thread =
      (256ull << 20) / 16 * (std::getenv("UNTORN_THROTTLE_PASSES") ? std::atoi(std::getenv("UNTORN_THROTTLE_PASSES")) : 16);
  std::atomic<uint64_t> written{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<std::byte> buf(256 << 10);
      for (uint64_t done = 0; done < per_thread; done += buf.size()) {
        // Each thread owns a 16M region; the last pass leaves a known pattern.
        const uint64_t off = t * (16 << 20) + (done % (16 << 20));
        const uint64_t tag = done + 1;
        for (size_t i = 0; i < buf.size(); i += 8) std::memcpy(buf.data() + i, &tag, 8);
        path_->write(off, buf, false);
        written += buf.size();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(written.load(), 4 * per_thread);
  auto c = path_->counters();
  EXPECT_GT(c.throttle_waits + c.memory_waits, 0u);
  EXPECT_LE(c.cached_bytes, uint64_t{8 << 20} + (4 << 20));  // over only by requests in flight
  path_->flush();
  for (int t = 0; t < 4; ++t) {
    for (uint64_t at = 0; at < (16 << 20); at += 256 << 10) {
      const uint64_t tag = per_thread - (16 << 20) + at + 1;
      auto got = device_bytes(t * (16 << 20) + at, 4096);
      uint64_t v;
      std::memcpy(&v, got.data(), 8);
      ASSERT_EQ(v, tag) << "thread " << t << " at " << at;
    }
  }
}

// Concurrent writers and flushers over shared ranges: after the writers stop and a last
// flush, the device holds exactly what the cache serves.
TEST_F(CachedPathTest, ConcurrentWritesAndFlushesLeaveTheDeviceEqualToTheCache) {
  open({.cache_size = 8 << 20, .folio_max = 256 << 10});
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (int i = 0; i < 3000; ++i) {
        const uint64_t len = 4096 * (1 + rng() % 16);
        const uint64_t off = 4096 * (rng() % ((4 << 20) / 4096 - 16));
        auto data = pattern(len, rng());
        path_->write(off, data, false);
        if (rng() % 50 == 0) path_->flush();
      }
    });
  for (auto& t : threads) t.join();
  path_->flush();
  auto cached = read(0, 4 << 20);
  EXPECT_EQ(device_bytes(0, 4 << 20), cached);
}

TEST_F(CachedPathTest, FailedWritebackKeepsDataDirtyAndFailsTheNextFlush) {
  open({.background = false});
  auto data = pattern(65536, 7);
  path_->write(0, data, false);
  faulty_->fail_writes(100);
  faulty_->fail_syncs(100);
  try {
    path_->flush();
    FAIL() << "flush should fail";
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), EIO);
    EXPECT_THAT(e.what(), HasSubstr("writeback failed"));
  }
  EXPECT_EQ(path_->counters().dirty_bytes, 65536u);
  EXPECT_EQ(read(0, data.size()), data);  // still served from the cache
  faulty_->fail_writes(0);
  faulty_->fail_syncs(0);
  path_->flush();
  EXPECT_EQ(device_bytes(0, data.size()), data);
}

// R1 in writethrough: the failed write reaches the client as EIO, nothing stays dirty, and
// the range is read from the device again (not served from the folio that failed).
TEST_F(CachedPathTest, FailedWritethroughFailsTheRequestAndDropsTheRange) {
  open({.mode = CacheMode::writethrough, .background = false});
  auto before = pattern(65536, 11);
  path_->write(0, before, false);
  faulty_->fail_writes(100);
  try {
    path_->write(0, pattern(65536, 12), false);
    FAIL() << "the write should fail";
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), EIO);
  }
  faulty_->fail_writes(0);
  EXPECT_EQ(path_->counters().dirty_bytes, 0u);
  EXPECT_EQ(read(0, 65536), device_bytes(0, 65536));
  EXPECT_EQ(read(0, 65536), before);
  path_->flush();  // nothing left over to fail
}

// A trim drops the folios inside its range (invalidate gives the folio walk's own
// reference to drop_if_clean, which refuses a folio anyone else still holds), and keeps
// the one it only overlaps, its blocks no longer uptodate.
TEST_F(CachedPathTest, ATrimDropsTheFoliosInsideItsRange) {
  open({.background = false});
  const auto data = pattern(1 << 20, 13);
  path_->write(4 << 20, data, false);
  const auto second = pattern(65536, 14);
  path_->write(6 << 20, second, false);
  path_->flush();
  ASSERT_EQ(path_->counters().folios, 2u);
  path_->trim(4 << 20, (2 << 20) + 4096, false);  // the first whole, the second in part
  EXPECT_EQ(path_->counters().folios, 1u);
  EXPECT_EQ(read(4 << 20, 1 << 20), std::vector<std::byte>(1 << 20));
  const auto rest = read((6 << 20) + 4096, 65536 - 4096);
  EXPECT_EQ(rest, std::vector<std::byte>(second.begin() + 4096, second.end()));
  EXPECT_EQ(read(6 << 20, 4096), std::vector<std::byte>(4096));
}

TEST_F(CachedPathTest, ReadErrorReachesTheClientAndLeavesNothingBehind) {
  open({.background = false});
  // Data on the device and nothing cached, so the read needs the device (a hole would be
  // zero-filled from the extent map with no read to fail).
  auto data = pattern(8192, 8);
  path_->write(0, data, false);
  path_->flush();
  ASSERT_TRUE(path_->folio_cache().evict_to_fit(path_->folio_cache().budget()));
  faulty_->fail_reads(1);
  std::vector<std::byte> buf(8192);
  try {
    path_->read(0, buf);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), EIO);
  }
  EXPECT_EQ(read(0, 8192), data);  // no block was marked uptodate by the failed read
}

// Expects f() to throw IoError with errno `err` and a message containing `words`.
template <typename F>
void expect_io_error(F&& f, int err, const std::string& words) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), err) << e.what();
    EXPECT_THAT(e.what(), ::testing::HasSubstr(words));
  }
}

// NBD_CMD_FLAG_FAST_ZERO: ENOTSUP at once, with nothing changed, where zeroing would mean
// writing; a range already a hole succeeds with no device work; data is deallocated.
TEST_F(CachedPathTest, FastZeroFailsAtOnceWhereItWouldWriteAndChangesNothing) {
  open({.background = false});
  const auto data = pattern(1 << 20, 11);
  path_->write(0, data, false);
  path_->flush();
  const ZeroOptions fast{.may_punch = true, .fast_only = true};
  expect_io_error([&] { path_->zero(100, 65536, fast, false); }, ENOTSUP, "whole blocks");
  // 32K at 4K: eligible, and beyond the 4K native unit, so it would need a journal record.
  expect_io_error([&] { path_->zero(4096, 32768, fast, false); }, ENOTSUP, "journal");
  EXPECT_EQ(read(0, 1 << 20), data);
  // A hole already: nothing to do (the extent map says so).
  path_->zero(8 << 20, 1 << 20, fast, false);
  EXPECT_EQ(path_->counters().zero_skips, 1u);
  // Data, not journaled: deallocated by the device.
  path_->zero(1 << 20, 1 << 20, fast, false);  // never written: a hole too
  path_->write(16 << 20, data, false);
  path_->flush();  // checkpoint: no journal record is left over the range
  path_->zero(16 << 20, 1 << 20, fast, false);
  EXPECT_EQ(read(16 << 20, 1 << 20), std::vector<std::byte>(1 << 20));
  auto e = path_->extents(16 << 20, 1 << 20);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_FALSE(e[0].data);
}

// D2 for a zero the device need not do: a FUA trim of a range already a hole still makes
// that hole durable (the punch before it may not be synced yet).
TEST_F(CachedPathTest, AFuaTrimOfAHoleStillSyncs) {
  open({.background = false});
  path_->write(1 << 20, pattern(1 << 20, 14), false);
  path_->flush();                        // data on the device, no journal record left
  path_->trim(1 << 20, 1 << 20, false);  // punched, not synced
  EXPECT_EQ(path_->counters().zero_skips, 0u);
  faulty_->fail_syncs(1);
  expect_io_error([&] { path_->trim(1 << 20, 1 << 20, true); }, EIO, "injected sync error");
  EXPECT_EQ(path_->counters().zero_skips, 1u);  // skipped the punch, not the sync
  // After a failed sync nothing more is promised durable until a restart.
  expect_io_error([&] { path_->trim(1 << 20, 1 << 20, true); }, EIO, "fdatasync failed earlier");
}

// "fsyncgate": after a failed device fdatasync the kernel may have dropped dirty pages
// while marking them clean, so a later sync that succeeds proves nothing. The writer
// refuses writes (even into the cache) and flushes from then on, and the journal keeps
// its records for the next start's recovery.
TEST_F(CachedPathTest, AfterAFailedSyncWritesAndFlushesFailUntilRestart) {
  open({.background = false});
  auto data = pattern(65536, 21);
  path_->write(4096, data, false);  // 64K across a 4K native unit: journaled at writeback
  faulty_->fail_syncs(1);
  expect_io_error([&] { path_->flush(); }, EIO, "injected sync error");
  expect_io_error([&] { path_->flush(); }, EIO, "fdatasync failed earlier (injected sync error)");
  expect_io_error([&] { path_->write(1 << 20, data, false); }, EIO, "restarted");
  expect_io_error([&] { path_->zero(1 << 20, 1 << 20, {}, false); }, EIO, "restarted");
  EXPECT_EQ(read(4096, data.size()), data) << "reads are still served";
  EXPECT_GT(stack_->journal->record_bytes(), 0u) << "the journal was reset after a failed sync";
}

// Reads of never-written space are zero-filled from the extent map: no device read, and
// no cache memory taken for them.
TEST_F(CachedPathTest, ReadsOfHolesNeedNoDeviceAndNoCacheMemory) {
  open({.background = false});
  faulty_->fail_reads(1000);  // any device read would fail the request
  EXPECT_EQ(read(4 << 20, 4 << 20), std::vector<std::byte>(4 << 20));
  EXPECT_EQ(path_->counters().folios, 0u);
  EXPECT_GE(path_->counters().hole_fill_bytes, 4u << 20);
  faulty_->fail_reads(0);
}

// Block status: REQ_ONE answers one extent, as long as the allocation allows; a warm map
// answers with no device probe; zeroed (not punched) whole blocks are "zero", not "hole".
TEST_F(CachedPathTest, BlockStatusComesFromTheMapWithReqOne) {
  open({.background = false});
  path_->write(8 << 20, pattern(1 << 20, 12), false);
  path_->flush();
  path_->zero(20 << 20, 1 << 20, {.may_punch = false, .fast_only = false}, false);
  auto first = path_->extents(0, kSize, true);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0], (Extent{0, 8 << 20, false}));
  const uint64_t probes = path_->counters().extent_probes;
  auto data = path_->extents(8 << 20, kSize - (8 << 20), true);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0], (Extent{8 << 20, 1 << 20, true}));
  auto all = path_->extents(0, kSize);
  EXPECT_EQ(path_->counters().extent_probes, probes + 1);  // only what was never asked: past 21M
  ASSERT_GE(all.size(), 4u);
  EXPECT_EQ(all[2], (Extent{9 << 20, 11 << 20, false}));
  EXPECT_EQ(all[3], (Extent{20 << 20, 1 << 20, false, true}));  // zero, not hole
}

// A write that fails part-way (the edge read of its last folio) leaves the folios before
// it dirty: they are counted, so block status still looks at the cache and calls them
// data (E1), and the count comes back to zero when they are written back.
TEST_F(CachedPathTest, AFailedWriteCountsTheBlocksItDirtied) {
  open({.folio_max = 65536, .background = false});
  const auto data = pattern(65536 + 100, 13);
  faulty_->fail_reads(1);  // the read of block 64K, which the write covers in part
  expect_io_error([&] { path_->write(0, data, false); }, EIO, "injected read error");
  EXPECT_EQ(path_->counters().dirty_bytes, 65536u);
  auto e = path_->extents(0, 65536);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_TRUE(e[0].data);
  path_->flush();
  EXPECT_EQ(path_->counters().dirty_bytes, 0u);
  EXPECT_EQ(read(0, 65536), std::vector<std::byte>(data.begin(), data.begin() + 65536));
}

TEST_F(CachedPathTest, ExtentsReportDirtyDataOverAHoleAsData) {
  open({.background = false});
  path_->trim(0, 1 << 20, false);
  path_->write(65536, pattern(4096, 9), false);
  auto e = path_->extents(0, 1 << 20);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0], (Extent{0, 65536, false}));
  EXPECT_EQ(e[1], (Extent{65536, 4096, true}));
  EXPECT_EQ(e[2], (Extent{65536 + 4096, (1 << 20) - 65536 - 4096, false}));
}

TEST_F(CachedPathTest, PrefetchFillsTheCacheAndReadAheadFollowsStreams) {
  open({.background = false});
  auto data = pattern(4 << 20, 10);
  stack_->mapped->write(0, data);
  path_->prefetch(0, 1 << 20);
  EXPECT_EQ(path_->counters().prefetch_bytes, 1u << 20);
  EXPECT_EQ(read(0, 65536), std::vector<std::byte>(data.begin(), data.begin() + 65536));
  EXPECT_EQ(path_->counters().read_hits, 1u);
  for (uint64_t at = 1 << 20; at < (2 << 20); at += 65536)
    ASSERT_EQ(read(at, 65536), std::vector<std::byte>(data.begin() + at, data.begin() + at + 65536));
  EXPECT_GT(path_->counters().readahead_bytes, 0u);
  EXPECT_GT(path_->counters().read_hits, 8u);
}

}  // namespace
}  // namespace untorn

namespace untorn {
namespace {

// D1 under concurrency: writers on four threads, flushes among them; when a flush returns,
// every write completed before it began is on the device, or a later write over it. (It
// found a flush that missed a group a concurrent write had moved in front of the folio
// being collected: Writeback::collect now takes every group touching its range.)
TEST_F(CachedPathTest, FlushCoversEveryWriteCompletedBeforeIt) {
  open({.cache_size = 64 << 20, .folio_max = 256 << 10});
  constexpr uint64_t kRegion = 1 << 20, kL = 4096, kA = 65536, kSectors = kRegion / 512;
  constexpr int kThreads = 4;
  struct W {
    uint64_t offset, length;
    uint64_t done = 0;  // sequence number when the write returned; 0 while in flight
  };
  std::mutex m;
  std::vector<std::vector<W>> writes(kThreads);  // write n of thread c has id c * 100000 + n + 1
  std::atomic<uint64_t> seq{1};
  std::atomic<int> failures{0};
  std::string first;
  // Checks, when a flush that began at `start` has returned, every sector of every region.
  auto check = [&](uint64_t start) {
    std::lock_guard lk(m);
    const std::vector<std::byte> dev = device_bytes(0, kThreads * kRegion);
    for (int c = 0; c < kThreads; ++c) {
      // floor[x]: index + 1 of the newest write completed before `start` over sector x.
      std::vector<size_t> floor(kSectors, 0);
      for (size_t i = 0; i < writes[c].size(); ++i) {
        const W& w = writes[c][i];
        if (!w.done || w.done >= start) continue;
        for (uint64_t at = w.offset; at < w.offset + w.length; at += 512)
          floor[(at - c * kRegion) / 512] = std::max(floor[(at - c * kRegion) / 512], i + 1);
      }
      for (uint64_t x = 0; x < kSectors; ++x) {
        if (!floor[x]) continue;
        const uint64_t at = c * kRegion + x * 512;
        const auto s = untorn::testing::read_stamp(dev.data() + at, at);
        // A stamp names its write and offset: it is allowed if it is that write or later.
        const bool ok = s.kind == untorn::testing::SectorContent::Kind::stamped &&
                        s.id / 100000 == static_cast<uint32_t>(c) && s.id % 100000 >= floor[x];
        if (!ok && failures++ == 0)
          first = "sector at " + std::to_string(at) + " holds write " + std::to_string(s.id) +
                  ", older than write " + std::to_string(c * 100000 + floor[x]) +
                  " which completed before the flush";
      }
    }
  };
  std::vector<std::thread> threads;
  for (int c = 0; c < kThreads; ++c)
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(500 + c);
      std::vector<std::byte> buf(kA);
      for (int n = 0; n < 1500; ++n) {
        if (rng() % 20 == 0) {
          const uint64_t start = seq.fetch_add(1);
          path_->flush();
          check(start);
          continue;
        }
        const uint64_t length = kL * (1 + rng() % (kA / kL));
        const uint64_t offset = c * kRegion + kL * (rng() % ((kRegion - length) / kL + 1));
        size_t index;
        {
          std::lock_guard lk(m);
          index = writes[c].size();
          writes[c].push_back({offset, length});
        }
        untorn::testing::stamp(std::span(buf.data(), length), static_cast<uint32_t>(c * 100000 + index + 1), offset);
        path_->write(offset, std::span(buf.data(), length), false);
        std::lock_guard lk(m);
        writes[c][index].done = seq.fetch_add(1);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_GT(path_->counters().writeback_bytes, 0u);
  EXPECT_EQ(failures.load(), 0) << first;
}

}  // namespace
}  // namespace untorn
