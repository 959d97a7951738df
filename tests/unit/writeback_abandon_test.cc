// Memory running out half way through collecting a writeback batch: the groups already
// taken (moved dirty -> writeback) must be given back, whole, or nothing ever completes
// them: every later flush skips them as not dirty and succeeds without their data (D1).
// The test-only hook before_take_group (cache/race_hooks.h) throws where the next
// allocation would fail.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <utility>

#include "cache/cached_path.h"
#include "tests/support/small_cached_path.h"
#include "tests/support/test_data.h"
#include "util/io_error.h"

namespace untorn {
namespace {

using testing::pattern;

constexpr uint64_t kFirst = 1 << 20, kSecond = 8 << 20;  // two groups in two folios

class WritebackAbandonTest : public testing::SmallCachedPathTest {
 protected:
  // Whether any block of the folio at `offset` is still under writeback.
  bool under_writeback(uint64_t offset) {
    FolioCache::Ref f = path_->folio_cache().find(offset, false);
    if (!f) return false;
    std::lock_guard fl(f->mutex());
    return f->any(Folio::writeback, 0, f->blocks());
  }
};

TEST_F(WritebackAbandonTest, GroupsTakenBeforeAFailedAllocationAreWrittenByTheNextFlush) {
  const auto first = pattern(65536, 21), second = pattern(65536, 22);
  path_->write(kFirst, first, false);  // atomic-eligible: one group each
  path_->write(kSecond, second, false);
  int taken = 0;
  path_->race_hooks().before_take_group = [&] {
    if (++taken == 2) throw std::bad_alloc();  // the first group is taken, the second not
  };
  EXPECT_THROW(path_->flush(), std::bad_alloc);
  path_->race_hooks().before_take_group = nullptr;
  ASSERT_EQ(taken, 2) << "the flush did not reach the second group";
  EXPECT_FALSE(under_writeback(kFirst)) << "the group taken before the failure is stranded under writeback";
  EXPECT_EQ(on_device(kFirst, 65536), std::vector<std::byte>(65536)) << "nothing was submitted";

  path_->flush();
  EXPECT_EQ(on_device(kFirst, 65536), first) << "a flush succeeded without the group taken before the failure (D1)";
  EXPECT_EQ(on_device(kSecond, 65536), second);
  // The groups stay whole: a write over the first one finishes and its data is read back.
  const auto again = pattern(65536, 23);
  path_->write(kFirst, again, true);
  EXPECT_EQ(on_device(kFirst, 65536), again);
}

// The same failure in a request's own write-through (FUA): a write larger than A is
// several groups; memory runs out after the first is taken. The request fails, and every
// group is given back dirty for the next flush.
TEST_F(WritebackAbandonTest, AFuaWriteWhoseCollectFailsLeavesItsGroupsForTheNextFlush) {
  const auto data = pattern(131072, 24);
  int taken = 0;
  path_->race_hooks().before_take_group = [&] {
    if (++taken == 2) throw std::bad_alloc();
  };
  EXPECT_THROW(path_->write(kFirst, data, true), std::bad_alloc);
  path_->race_hooks().before_take_group = nullptr;
  ASSERT_EQ(taken, 2) << "the write's write-through did not reach a second group";
  EXPECT_FALSE(under_writeback(kFirst)) << "the group taken before the failure is stranded under writeback";
  // The next flush writes the groups and reports the failure (R1: a flush running
  // meanwhile could have passed them by); the one after that has nothing to report.
  EXPECT_THROW(path_->flush(), IoError);
  EXPECT_EQ(on_device(kFirst, 131072), data) << "the flush did not write the write's first group (D1)";
  path_->flush();
}

// Memory running out after the batch is collected, before its I/O: the batch completes
// as a failed one (its groups dirty again, whole), the flush fails with EIO and the
// next flush writes them.
TEST_F(WritebackAbandonTest, ABatchThatRunsOutOfMemoryBeforeItsIoFailsLikeAFailedWrite) {
  const auto data = pattern(65536, 25);
  path_->write(kFirst, data, false);
  path_->race_hooks().before_writeback_io = [fired = false]() mutable {
    if (!std::exchange(fired, true)) throw std::bad_alloc();
  };
  try {
    path_->flush();
    ADD_FAILURE() << "the flush succeeded without writing the batch";
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), EIO);
    EXPECT_NE(std::string(e.what()).find("ran out of memory"), std::string::npos) << e.what();
  }
  path_->race_hooks().before_writeback_io = nullptr;
  EXPECT_FALSE(under_writeback(kFirst)) << "the batch's group is stranded under writeback";
  path_->flush();
  EXPECT_EQ(on_device(kFirst, 65536), data) << "a flush succeeded without the group (D1)";
}

// A flush that runs while another pass is collecting passes the groups that pass took by
// (they are under writeback) and waits for its batch. When that batch is given back
// instead (memory ran out before its next folio), the flush must not succeed: the group
// it passed by was never written (D1). It fails with EIO, and the next flush writes it.
TEST_F(WritebackAbandonTest, AFlushThatPassedAGivenBackGroupByFails) {
  const auto first = pattern(65536, 28), second = pattern(65536, 29);
  path_->write(kFirst, first, false);
  path_->write(kSecond, second, false);
  std::mutex m;
  std::condition_variable cv;
  bool flush_waiting = false, flush_done = false;
  int flush_errno = 0;
  std::string flush_message;
  std::thread flusher;
  path_->race_hooks().before_flush_waits = [&] {
    std::lock_guard lk(m);
    flush_waiting = true;
    cv.notify_all();
  };
  int folios = 0;
  path_->race_hooks().before_collecting_folio = [&] {
    if (++folios != 2) return;  // the first folio's group is in the batch now
    flusher = std::thread([&] {
      try {
        path_->flush();
      } catch (const IoError& e) {
        flush_errno = e.err();
        flush_message = e.what();
      } catch (...) {
        flush_errno = -1;
      }
      std::lock_guard lk(m);
      flush_done = true;
      cv.notify_all();
    });
    {
      std::unique_lock lk(m);
      // A bound, not a synchronisation: a flush stuck before its wait fails the test.
      if (!cv.wait_for(lk, std::chrono::seconds(60), [&] { return flush_waiting || flush_done; }))
        ADD_FAILURE() << "the flush neither waited for the running batch nor finished";
    }
    throw std::bad_alloc();
  };
  EXPECT_THROW(path_->writeback().write_some(UINT64_MAX, false), std::bad_alloc);
  ASSERT_TRUE(flusher.joinable()) << "the pass did not reach a second folio";
  flusher.join();
  path_->race_hooks().before_collecting_folio = nullptr;
  path_->race_hooks().before_flush_waits = nullptr;
  EXPECT_EQ(flush_errno, EIO) << "a flush succeeded though a group it passed by was given back unwritten (D1): "
                              << flush_message;
  EXPECT_FALSE(under_writeback(kFirst));
  EXPECT_FALSE(under_writeback(kSecond));
  path_->flush();  // the failure was reported once; this one writes what is left
  EXPECT_EQ(on_device(kFirst, 65536), first);
  EXPECT_EQ(on_device(kSecond, 65536), second);
}

// In writethrough the same failure fails the write and drops its range: nothing stays
// dirty (the cache promised to hold none), so no flush has anything to report, and the
// range reads back as the device has it.
TEST_F(WritebackAbandonTest, AWritethroughWriteWhoseCollectFailsLeavesNothingDirty) {
  open_path(CacheMode::writethrough);
  const auto data = pattern(131072, 27);
  path_->write(kFirst, pattern(131072, 26), false);  // written through
  int taken = 0;
  path_->race_hooks().before_take_group = [&] {
    if (++taken == 2) throw std::bad_alloc();
  };
  EXPECT_THROW(path_->write(kFirst, data, false), std::bad_alloc);
  path_->race_hooks().before_take_group = nullptr;
  ASSERT_EQ(taken, 2);
  EXPECT_FALSE(under_writeback(kFirst));
  EXPECT_EQ(path_->counters().dirty_bytes, 0u) << "a writethrough cache kept dirty data";
  path_->flush();  // nothing failed that a flush must report
  EXPECT_EQ(read(kFirst, 131072), on_device(kFirst, 131072)) << "the cache and the device disagree";
}

}  // namespace
}  // namespace untorn
