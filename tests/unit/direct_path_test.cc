#include "cache/direct_path.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "device/backing_file.h"
#include "device/recovery.h"
#include "tests/support/journaled_backing.h"
#include "tests/support/temp_dir.h"
#include "util/io_error.h"

namespace untorn {
namespace {

using untorn::testing::FaultyDevice;
using untorn::testing::TempDir;

constexpr uint64_t kSize = 8 << 20;

class DirectPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::make_unique<DirectPath>(*stack_.faulty, *stack_.writer, 4096, 65536);
    model_.assign(kSize, std::byte{0});
  }

  std::vector<std::byte> read(uint64_t off, size_t len) {
    std::vector<std::byte> out(len);
    path_->read(off, out);
    return out;
  }
  void write(uint64_t off, const std::vector<std::byte>& data, bool fua = false) {
    path_->write(off, data, fua);
    std::memcpy(model_.data() + off, data.data(), data.size());
  }
  void expect_matches_model(uint64_t off, size_t len) {
    auto got = read(off, len);
    ASSERT_EQ(std::memcmp(got.data(), model_.data() + off, len), 0) << "mismatch in [" << off << ", +" << len << ")";
  }

  TempDir dir_;
  testing::JournaledBacking stack_{dir_, kSize};  // a 64K write goes through its journal
  std::unique_ptr<DirectPath> path_;
  std::vector<std::byte> model_;
};

std::vector<std::byte> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

TEST_F(DirectPathTest, RandomUnalignedOperationsMatchAModel) {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 1500; ++i) {
    size_t len = 1 + rng() % (3 * 4096 + 100);
    if (rng() % 4 == 0) len = 4096 * (1 + rng() % 32);
    uint64_t off = rng() % (kSize - len);
    if (rng() % 3 == 0) off = off / 4096 * 4096;
    switch (rng() % 5) {
      case 0:
      case 1:
        write(off, random_bytes(rng, len), rng() % 8 == 0);
        break;
      case 2:
        path_->zero(off, len, {.may_punch = rng() % 2 == 0}, false);
        std::memset(model_.data() + off, 0, len);
        break;
      case 3:
        path_->trim(off, len, false);
        std::memset(model_.data() + off, 0, len);
        break;
      default:
        expect_matches_model(off, len);
    }
  }
  for (uint64_t off = 0; off < kSize; off += 1 << 20) expect_matches_model(off, 1 << 20);
}

TEST_F(DirectPathTest, ExtentsNeverCallDataAHole) {
  std::mt19937_64 rng(99);
  for (int i = 0; i < 200; ++i) {
    size_t len = 1 + rng() % 70000;
    uint64_t off = rng() % (kSize - len);
    if (rng() % 2) write(off, random_bytes(rng, len));
    else {
      path_->trim(off, len, false);
      std::memset(model_.data() + off, 0, len);
    }
  }
  for (int i = 0; i < 200; ++i) {
    size_t len = 1 + rng() % (1 << 20);
    uint64_t off = rng() % (kSize - len);
    auto ext = path_->extents(off, len);
    uint64_t pos = off;
    for (const Extent& e : ext) {
      ASSERT_EQ(e.offset, pos);
      if (!e.data) {
        for (uint64_t b = e.offset; b < e.offset + e.length; ++b) {
          ASSERT_EQ(model_[b], std::byte{0}) << "hole reported over data at " << b;
        }
      }
      pos += e.length;
    }
    ASSERT_EQ(pos, off + len);
  }
  // A fully trimmed aligned range is reported as a hole, so holes are not just "never".
  path_->trim(1 << 20, 1 << 20, false);
  auto ext = path_->extents(1 << 20, 1 << 20);
  ASSERT_EQ(ext.size(), 1u);
  EXPECT_FALSE(ext[0].data);
}

TEST_F(DirectPathTest, PartlyZeroedBlockIsReportedAsData) {
  std::mt19937_64 rng(1);
  write(0, random_bytes(rng, 16384));
  path_->trim(4096, 4096 + 100, false);  // one whole block and 100 bytes of the next
  auto ext = path_->extents(0, 16384);
  ASSERT_EQ(ext.size(), 3u);
  EXPECT_EQ(ext[1], (Extent{4096, 4096, false}));
  EXPECT_TRUE(ext[2].data);
}

// Several threads write different bytes of the same granule with unaligned writes; every
// write is a read-modify-write of the granule, and without the range lock some of them
// would be lost.
TEST_F(DirectPathTest, ConcurrentUnalignedWritesLoseNothing) {
  constexpr int kThreads = 4, kRounds = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        // Thread t owns bytes t*8 .. t*8+7 of granules 0..3 (cycled).
        uint64_t off = static_cast<uint64_t>(r % 4) * 4096 + static_cast<uint64_t>(t) * 8;
        std::vector<std::byte> v(8, static_cast<std::byte>(r % 251 + 1));
        path_->write(off, v, false);
      }
    });
  for (auto& th : threads) th.join();
  auto got = read(0, 4 * 4096);
  for (int t = 0; t < kThreads; ++t)
    for (int g = 0; g < 4; ++g) {
      int last_round = kRounds - 4 + g;  // last r with r % 4 == g
      for (int k = 0; k < 8; ++k)
        EXPECT_EQ(got[static_cast<size_t>(g * 4096 + t * 8 + k)], static_cast<std::byte>(last_round % 251 + 1))
            << "thread " << t << " granule " << g;
    }
}

TEST_F(DirectPathTest, OutOfRangeRequestsFailWithNbdErrnos) {
  std::vector<std::byte> buf(4096);
  auto err_of = [](auto&& f) {
    try {
      f();
    } catch (const IoError& e) {
      return e.err();
    }
    return 0;
  };
  EXPECT_EQ(err_of([&] { path_->read(kSize - 100, buf); }), EINVAL);
  EXPECT_EQ(err_of([&] { path_->write(kSize, buf, false); }), ENOSPC);
  EXPECT_EQ(err_of([&] { path_->zero(kSize - 4096, 8192, {}, false); }), ENOSPC);
  EXPECT_EQ(err_of([&] { path_->trim(kSize, 1, false); }), EINVAL);
  EXPECT_EQ(err_of([&] { path_->extents(kSize, 1); }), EINVAL);
  EXPECT_EQ(err_of([&] { path_->prefetch(kSize - 1, 2); }), EINVAL);
}

TEST_F(DirectPathTest, IoErrorsReachTheCallerAndChangeNothing) {
  std::mt19937_64 rng(5);
  write(0, random_bytes(rng, 65536));
  auto before = read(0, 65536);
  EXPECT_GT(stack_.writer->stats().journaled, 0u) << "a 64K write must have gone through the journal";

  stack_.faulty->fail_writes(1, EIO);
  auto data = random_bytes(rng, 4096);  // in place (one native unit): the device write fails
  try {
    path_->write(0, data, false);
    FAIL() << "write succeeded";
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), EIO);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("injected write error"));
  }
  EXPECT_EQ(read(0, 65536), before);

  // An unaligned write whose read-modify-write read fails changes nothing either.
  stack_.faulty->fail_reads(1, EIO);
  EXPECT_THROW(path_->write(100, std::vector<std::byte>(10, std::byte{1}), false), IoError);
  EXPECT_EQ(read(0, 65536), before);

  stack_.faulty->fail_writes(1, ENOSPC);
  try {
    path_->write(0, data, false);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), ENOSPC);
  }
  // Failed writes leave the device usable; a failed sync does not ("fsyncgate"): every
  // later write and flush fails too, until a restart replays the journal.
  EXPECT_NO_THROW(path_->flush());
  stack_.faulty->fail_syncs(1, EIO);
  EXPECT_THROW(path_->flush(), IoError);
  for (int i = 0; i < 2; ++i) {
    try {
      i == 0 ? path_->flush() : path_->write(0, data, false);
      FAIL() << "a request after a failed sync succeeded";
    } catch (const IoError& e) {
      EXPECT_EQ(e.err(), EIO);
      EXPECT_THAT(e.what(), ::testing::HasSubstr("fdatasync failed earlier (injected sync error)"));
    }
  }
}

TEST_F(DirectPathTest, FuaWriteSyncs) {
  // Without durable device writes, FUA must reach the device as a sync: a failing sync
  // fails the FUA write.
  stack_.faulty->offer_durable_writes(false);
  stack_.faulty->fail_syncs(1, EIO);
  EXPECT_NO_THROW(path_->write(0, std::vector<std::byte>(4096), false)) << "no FUA: no sync";
  EXPECT_THROW(path_->write(0, std::vector<std::byte>(4096), true), IoError);
}

TEST_F(DirectPathTest, FuaWriteIsOneDurableWriteWhereTheDeviceHasThem) {
  if (!stack_.faulty->supports_durable_writes())
    GTEST_SKIP() << "SKIPPED LOUDLY: the backing file has no O_DIRECT here, so no durable writes";
  // The FUA write is durable by itself (RWF_DSYNC): no fdatasync, so the armed sync
  // failure is still there for the FLUSH that follows.
  stack_.faulty->fail_syncs(1, EIO);
  EXPECT_NO_THROW(path_->write(0, std::vector<std::byte>(4096), true));
  EXPECT_EQ(stack_.writer->stats().durable_writes, 1u);
  EXPECT_EQ(stack_.writer->stats().device_syncs, 0u);
  // A failed durable write fails the FUA request.
  stack_.faulty->fail_writes(1, EIO);
  EXPECT_THROW(path_->write(8192, std::vector<std::byte>(4096), true), IoError);
  EXPECT_THROW(path_->flush(), IoError) << "the FUA write should not have used the sync";
}

}  // namespace
}  // namespace untorn
