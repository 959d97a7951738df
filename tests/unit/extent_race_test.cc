// The extent map's revalidation points under deterministic races (DESIGN.md §5), and one
// race of a write against a failed writeback (WriteRaceTest, A2). Each test
// uses a test-only hook (cache/race_hooks.h) to change the allocation inside the window
// between taking a mapping and acting on it; with the check the answer is right, and
// with the check switched off by its hook the same race corrupts data or the reply:
// the proof each check matters.
#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "cache/cached_path.h"
#include "tests/support/small_cached_path.h"
#include "tests/support/test_data.h"

namespace untorn {
namespace {

using testing::pattern;

constexpr uint64_t kAt = 8 << 20;  // where the racing write lands
const std::vector<std::byte> kZeroes(65536);

class RaceFixture : public testing::SmallCachedPathTest {
 protected:
  // A write that reaches the device and leaves nothing cached: only the extent map (and
  // its cookies) can tell anyone it happened.
  void write_behind_the_cache(uint64_t offset, const std::vector<std::byte>& data) {
    path_->write(offset, data, false);
    path_->flush();
    ASSERT_TRUE(path_->folio_cache().evict_to_fit(path_->folio_cache().budget()));
  }
  bool is_data_at(const std::vector<Extent>& extents, uint64_t at) {
    for (const Extent& e : extents)
      if (e.offset <= at && at < e.offset + e.length) return e.data;
    ADD_FAILURE() << "no extent covers " << at;
    return false;
  }

  // A request started from inside a writeback hook, in its own thread: start() returns
  // once it has finished (it did not wait) or is waiting for writeback of its range,
  // whichever comes first; join() at the end (the destructor joins too, and takes the
  // hook away). Installs on_wait_for_writeback; an exception in the request fails the test.
  class RacingRequest {
   public:
    explicit RacingRequest(CachedPath& path) : path_(path) {
      path.race_hooks().on_wait_for_writeback = [this] {
        std::lock_guard lk(mu_);
        waited_ = true;
        cv_.notify_all();
      };
    }
    ~RacingRequest() {
      join();
      path_.race_hooks().on_wait_for_writeback = nullptr;
    }
    RacingRequest(const RacingRequest&) = delete;
    RacingRequest& operator=(const RacingRequest&) = delete;
    void start(std::function<void()> request) {
      thread_ = std::thread([this, request = std::move(request)] {
        try {
          request();
        } catch (const std::exception& e) {
          ADD_FAILURE() << "the racing request failed: " << e.what();
        }
        std::lock_guard lk(mu_);
        done_ = true;
        cv_.notify_all();
      });
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return done_ || waited_; });
    }
    void join() {
      if (thread_.joinable()) thread_.join();
    }
    bool done() {
      std::lock_guard lk(mu_);
      return done_;
    }
    bool waited() {
      std::lock_guard lk(mu_);
      return waited_;
    }

   private:
    CachedPath& path_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false, waited_ = false;
    std::thread thread_;
  };

};

class ExtentRaceTest : public RaceFixture, public ::testing::WithParamInterface<bool> {
 protected:
  // GetParam(): whether the check under test is switched off.
  bool check_off() const { return GetParam(); }
};

// Races whose closing is an order of steps, not a check to switch off.
using ExtentOrderTest = RaceFixture;

// A read of a gap with no folio takes the gap's end, then its mapping. A folio further on
// in the read's range, with dirty data over what the map calls a hole, may be written back
// while the read holds its range shared; eviction must not take it then (a hit may be
// using it with no reference: FolioCache::find_held), or its data would be zero-filled
// from the hole mapping, or read from freed memory. Once the read is done, it can go.
TEST_F(ExtentOrderTest, AFolioInARangeAReadHoldsIsNeverEvictedNorZeroFilled) {
  const auto data = pattern(65536, 5);
  path_->write(kAt + 65536, data, false);  // dirty in the cache; a hole on the device
  path_->race_hooks().after_read_hole_map = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;
    path_->flush();
    EXPECT_FALSE(path_->folio_cache().evict_to_fit(path_->folio_cache().budget()))
        << "evicted a folio inside a range a read holds";
    EXPECT_NE(path_->folio_cache().find(kAt + 65536, false), nullptr);
  };
  const auto got = read(kAt, 4 * 65536);
  EXPECT_EQ(std::vector<std::byte>(got.begin(), got.begin() + 65536), kZeroes);
  EXPECT_EQ(std::vector<std::byte>(got.begin() + 65536, got.begin() + 2 * 65536), data)
      << "data zero-filled from a hole mapping";
  EXPECT_TRUE(path_->folio_cache().evict_to_fit(path_->folio_cache().budget()))
      << "the folio stays unevictable after the read";
}

// A1 across probe rounds: a read that stops to probe drops its lock, and an atomic write
// may land before it takes the lock again. What the first round copied out is then
// stale: every round copies the whole request again, so the read is all old or all new,
// never half of each.
TEST_F(ExtentOrderTest, AReadThatStopsToProbeIsNeverTornByAWriteMeanwhile) {
  const auto old_half = pattern(32768, 7), now = pattern(65536, 8);
  path_->write(kAt, old_half, false);  // cached; the map knows nothing yet of what follows
  path_->race_hooks().after_read_map = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;
    path_->write(kAt, now, false);  // atomic-eligible: 64K at an L-aligned offset
  };
  EXPECT_EQ(read(kAt, 65536), now) << "the read mixed bytes from before and after the write (A1)";
  EXPECT_EQ(path_->counters().extent_probes, 1u);  // it did stop to probe
}

// A folio whose last dirty group was collected for writeback, but not yet written, must
// stay on its dirty list: the map still calls the range a hole, and only the listing
// tells block status the data exists (E1). Two groups of one folio go out in two
// batches; block status runs while the second is collected and the first has completed.
TEST_F(ExtentOrderTest, BlockStatusSeesAGroupCollectedButNotYetWritten) {
  // 128K: not atomic-eligible, so every block is a group of its own, in one folio.
  path_->write(0, pattern(131072, 6), false);
  auto& wb = path_->writeback();
  wb.write_range(4096, 8192, false);      // all but blocks 0 and 2 to the device
  wb.write_range(12288, 131072, false);
  std::vector<Extent> seen;
  path_->race_hooks().before_writeback_io = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;
    wb.write_range(0, 4096, false);  // block 0 completes; block 2 is collected, not written
    seen = path_->extents(8192, 4096);
  };
  wb.write_range(8192, 12288, false);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].data) << "block status called a collected, unwritten block a hole (E1)";
}

// (1) A read miss probes the allocation with no lock held, then takes the range lock and
// zero-fills what the probe called a hole. A write, its writeback and its eviction in
// between make that hole data; a stale mapping would return (and cache) zeroes.
TEST_P(ExtentRaceTest, ReadMissRevalidatesAMappingProbedBeforeTheLock) {
  const auto data = pattern(65536, 1);
  path_->race_hooks().skip_read_revalidation = check_off();
  path_->race_hooks().after_read_map = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;  // once
    write_behind_the_cache(kAt, data);
  };
  const auto got = read(kAt, 65536);
  if (check_off()) {
    EXPECT_EQ(got, kZeroes) << "the stale hole was not used: the race did not happen";
  } else {
    EXPECT_EQ(got, data);
    EXPECT_GT(path_->counters().stale_mappings, 0u);
  }
}

// (2) Block status takes mappings, then looks at the cache for dirty data. A write
// cached, written back and evicted in between is in neither view; a stale mapping would
// report it as a hole (E1).
TEST_P(ExtentRaceTest, BlockStatusRevalidatesMappingsAfterLookingAtTheCache) {
  const auto data = pattern(65536, 2);
  path_->race_hooks().skip_status_revalidation = check_off();
  path_->race_hooks().after_status_map = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;  // once
    write_behind_the_cache(kAt, data);
  };
  const auto extents = path_->extents(0, 16 << 20);
  EXPECT_EQ(read(kAt, 65536), data);
  if (check_off())
    EXPECT_FALSE(is_data_at(extents, kAt)) << "the race did not happen";
  else
    EXPECT_TRUE(is_data_at(extents, kAt)) << "data reported as a hole (E1)";
}

// (3) A zero maps its range before taking the exclusive lock, and skips the device when
// the range already reads as zeroes. A write landing in between makes that stale; a
// skipped zero would leave the data there (T1).
TEST_P(ExtentRaceTest, ZeroRevalidatesAMappingTakenBeforeTheLock) {
  const auto data = pattern(65536, 3);
  path_->race_hooks().skip_zero_revalidation = check_off();
  path_->race_hooks().after_zero_map = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;  // once
    write_behind_the_cache(kAt, data);
  };
  // 1 MiB: larger than A, so it goes to the device (not a cached write of zeroes).
  path_->zero(kAt - 65536, 1 << 20, {.may_punch = true, .fast_only = false}, false);
  const auto got = read(kAt, 65536);
  if (check_off()) {
    EXPECT_EQ(got, data) << "the zero was not skipped: the race did not happen";
  } else {
    EXPECT_EQ(got, kZeroes) << "zeroed data came back (T1)";
  }
}

// (4) Writeback of a write collects it, then writes it with no lock held. A trim of the
// same range in between must wait for that write, or it lands after the trim and brings
// the data back (T1).
TEST_P(ExtentRaceTest, TrimNeverLosesToAWritebackInFlight) {
  const auto data = pattern(65536, 4);
  path_->write(kAt, data, false);
  path_->race_hooks().skip_wait_for_writeback = check_off();
  RacingRequest trim(*path_);
  path_->race_hooks().before_writeback_io = [&, fired = false]() mutable {
    if (std::exchange(fired, true)) return;  // once
    // The trim either finishes (it did not wait) or is waiting for this writeback.
    trim.start([&] { path_->trim(kAt - 65536, 1 << 20, false); });
  };
  path_->flush();
  trim.join();
  EXPECT_TRUE(trim.done());
  EXPECT_NE(trim.waited(), check_off());
  const auto got = read(kAt, 65536);
  if (check_off())
    EXPECT_EQ(got, data) << "the writeback did not land after the trim: the race did not happen";
  else
    EXPECT_EQ(got, kZeroes) << "trimmed data came back from a late writeback (T1)";
}

// A2 against a failed writeback. A write whose block range ends inside a group that
// spans two folios finds the group crossing its edge while the group's writeback has
// failed and is being turned dirty again, piece by piece. It must wait for the whole
// group (its lock is widened to reach it), then write it back whole before its copy. With
// the wide wait off it settles half way: the group is not whole yet, so it is skipped,
// and the copy glues the group's tail (still joined) to the write's own blocks: the
// group's two halves would go to the device as separate operations.
class WriteRaceTest : public RaceFixture, public ::testing::WithParamInterface<bool> {
 protected:
  static constexpr uint64_t kB = kAt;  // a multiple of folio_max: the group's folios meet here
  bool check_off() const { return GetParam(); }
  // Caches `group` at [kB - 32K, kB + 32K), one atomic-eligible group over two folios,
  // fails its writeback and, between the failed group's piece completions, starts
  // `request` (which either finishes or waits for that batch). Returns whether it waited.
  bool race_with_a_half_reset_group(const std::vector<std::byte>& group, std::function<void()> request) {
    path_->write(kB - 32768, group, false);
    path_->race_hooks().skip_wide_wait = check_off();
    stack_->faulty->fail_writes(1);
    RacingRequest racer(*path_);
    path_->race_hooks().between_piece_completions = [&, fired = false]() mutable {
      if (std::exchange(fired, true)) return;  // the failed batch, once
      racer.start(request);
    };
    EXPECT_THROW(path_->flush(), IoError);  // the failed writeback is reported (R1)
    racer.join();
    path_->race_hooks().between_piece_completions = nullptr;
    return racer.waited();
  }
};

TEST_P(WriteRaceTest, AWriteNeverSplitsAGroupWhoseWritebackFailedHalfReset) {
  const auto g = pattern(65536, 11), w = pattern(16384, 12);
  // The write ends at kB, inside the group.
  EXPECT_NE(race_with_a_half_reset_group(g, [&] { path_->write(kB - 16384, w, false); }), check_off());
  bool tail_glued;
  {
    FolioCache::Ref tail = path_->folio_cache().find(kB, false);
    ASSERT_TRUE(tail);
    std::lock_guard fl(tail->mutex());
    tail_glued = tail->test(Folio::joined, 0) && tail->test(Folio::dirty, 0);
  }
  // What readers see is right either way; the grouping is what differs.
  auto want = g;
  std::copy(w.begin(), w.end(), want.begin() + 16384);
  EXPECT_EQ(read(kB - 32768, 65536), want);
  if (check_off()) {
    EXPECT_TRUE(tail_glued) << "the race did not happen: the group was not left half reset";
    return;
  }
  EXPECT_FALSE(tail_glued) << "the group's tail is joined to the new write: the group was split (A2)";
  std::vector<std::byte> on_device(65536);
  stack_->device->read(kB - 32768, on_device);
  EXPECT_EQ(on_device, g) << "the group was not written back whole before the write's copy";
}

// The same race against a trim whose zeroed middle ends inside the group: the trim must
// wait for the whole group and write it back whole before cutting it. With the wide wait
// off the group is skipped as not whole, the trim drops the half before its end, and the
// half after it is left dirty, joined to a block that no longer is: no writeback ever
// takes it, and a flush succeeds without it (D1).
TEST_P(WriteRaceTest, ATrimNeverStrandsAGroupWhoseWritebackFailedHalfReset) {
  const auto g = pattern(65536, 13);
  // The trim's zeroed middle ends at kB, inside the group.
  EXPECT_NE(race_with_a_half_reset_group(g, [&] { path_->trim(kB - 65536, 65536, false); }), check_off());
  path_->flush();  // everything dirty written back (the failure was reported above)
  std::vector<std::byte> on_device(32768);
  stack_->device->read(kB, on_device);
  const std::vector<std::byte> tail(g.begin() + 32768, g.end());
  if (check_off()) {
    EXPECT_NE(on_device, tail) << "the race did not happen: the group's tail reached the device";
    return;
  }
  EXPECT_EQ(on_device, tail) << "a flush succeeded with the group's tail never written (D1)";
  EXPECT_EQ(read(kB - 65536, 65536), std::vector<std::byte>(65536)) << "the trimmed range";
}

INSTANTIATE_TEST_SUITE_P(, WriteRaceTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "WideWaitOffSplitsTheGroup" : "WideWaitKeepsItWhole";
                         });

INSTANTIATE_TEST_SUITE_P(, ExtentRaceTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "CheckOffCorrupts" : "CheckOnIsRight";
                         });

}  // namespace
}  // namespace untorn
