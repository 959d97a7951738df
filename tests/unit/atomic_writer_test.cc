// AtomicWriter: which crash-atomic operation each write gets, and T1 across replay.
#include "device/atomic_writer.h"
#include "device/forwarding_device.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <algorithm>
#include <random>
#include <thread>

#include "device/recovery.h"
#include "tests/support/crash_recorder.h"
#include "tests/support/fault_injection.h"
#include "util/log.h"

namespace untorn {
namespace {

using Method = AtomicWriter::Method;
using testing::MemoryDevice;
using testing::MemoryJournalFile;

constexpr uint64_t kSize = 1 << 20;
const journal::Identity kId{kSize, 1, 1, 512};

struct Fixture {
  explicit Fixture(AtomicWriterOptions o, uint64_t rwf_max = 0)
      : device(std::vector<std::byte>(kSize), nullptr, rwf_max),
        journal(file, recover_journal(device, file, kId).header),
        writer(device, &journal, o) {}
  MemoryDevice device;
  MemoryJournalFile file;
  JournalWriter journal;
  AtomicWriter writer;
};

AtomicWriterOptions options(uint64_t native, JournalMode mode = JournalMode::automatic) {
  AtomicWriterOptions o;
  o.atomic_write_unit_max = 65536;
  o.native_atomic_unit = native;
  o.mode = mode;
  return o;
}

TEST(AtomicWriterTest, InPlaceOnlyWithinOneNativeUnit) {
  Fixture f(options(4096));
  EXPECT_EQ(f.writer.method_for(8192, 4096, true), Method::in_place);
  EXPECT_EQ(f.writer.method_for(8192, 1024, true), Method::in_place);
  EXPECT_EQ(f.writer.method_for(3584, 1024, true), Method::journal) << "crosses a 4K boundary";
  EXPECT_EQ(f.writer.method_for(0, 8192, true), Method::journal);
  EXPECT_EQ(f.writer.method_for(0, 8192, false), Method::in_place) << "not eligible: no promise";
}

TEST(AtomicWriterTest, RwfAtomicForNaturallyAlignedPowersOfTwo) {
  Fixture f(options(4096), /*rwf_max=*/16384);
  EXPECT_EQ(f.writer.method_for(16384, 16384, true), Method::rwf_atomic);
  EXPECT_EQ(f.writer.method_for(8192, 8192, true), Method::rwf_atomic);
  EXPECT_EQ(f.writer.method_for(4096, 16384, true), Method::journal) << "not naturally aligned";
  EXPECT_EQ(f.writer.method_for(0, 12288, true), Method::journal) << "not a power of two";
  EXPECT_EQ(f.writer.method_for(0, 32768, true), Method::journal) << "above the RWF_ATOMIC max";
}

TEST(AtomicWriterTest, JournalModes) {
  Fixture always(options(4096, JournalMode::always));
  EXPECT_EQ(always.writer.method_for(0, 4096, true), Method::journal);
  EXPECT_EQ(always.writer.method_for(0, 4096, false), Method::in_place);
  MemoryDevice device{std::vector<std::byte>(kSize)};
  AtomicWriter never(device, nullptr, options(4096, JournalMode::never));
  EXPECT_EQ(never.method_for(0, 65536, true), Method::in_place);
}

TEST(AtomicWriterTest, EligibleZeroesAreCrashAtomicToo) {
  Fixture f(options(4096), /*rwf_max=*/65536);
  EXPECT_EQ(f.writer.method_for(0, 65536, true, /*is_zero=*/true), Method::journal)
      << "fallocate cannot carry RWF_ATOMIC: an eligible zero above the native unit is journaled";
  EXPECT_EQ(f.writer.method_for(0, 4096, true, true), Method::in_place);
  EXPECT_EQ(f.writer.method_for(0, 65536, false, true), Method::in_place) << "not eligible";
  MemoryDevice device{std::vector<std::byte>(kSize)};
  AtomicWriter never(device, nullptr, options(4096, JournalMode::never));
  EXPECT_EQ(never.method_for(0, 65536, true, true), Method::in_place);
}

// DESIGN §1: WRITE_ZEROES is atomic-eligible. Old data is made durable, then an eligible
// 64K zero runs; every crash state of that (device zero torn in 4K pieces, journal torn
// in sectors, anything unsynced dropped) must recover to all old data or all zeroes.
TEST(AtomicWriterTest, EligibleZeroSurvivesEveryCrashWhole) {
  LogSink previous = set_log_sink([](LogLevel, std::string_view) {});
  std::vector<std::byte> old_data(65536, std::byte{0x5a});
  std::vector<std::byte> start(kSize);
  std::copy(old_data.begin(), old_data.end(), start.begin() + 65536);
  testing::CrashRecorder recorder;
  MemoryDevice device(start, &recorder);
  MemoryJournalFile journal_file({}, &recorder);
  JournalWriter journal(journal_file, recover_journal(device, journal_file, kId).header);
  AtomicWriter writer(device, &journal, options(4096));
  const size_t zero_starts = recorder.position();
  ASSERT_EQ(writer.zero(65536, 65536, {.may_punch = true}, true, false), Method::journal);
  std::mt19937_64 rng(7);
  uint64_t states = 0, all_old = 0, all_zero = 0;
  testing::CrashStateBuilder builder(recorder, start, {}, 4096);
  for (size_t cut = 1; cut <= recorder.log().size(); ++cut) {
    const auto& pending = builder.advance(cut);
    for (int sample = 0; sample < 200; ++sample) {
      std::vector<testing::Fate> fates(pending.size());
      for (auto& fate : fates) fate = static_cast<testing::Fate>(rng() % 3);
      auto [dev, jnl] = builder.build(fates, rng);
      MemoryDevice crashed(std::move(dev));
      MemoryJournalFile crashed_journal(std::move(jnl));
      recover_journal(crashed, crashed_journal, kId);
      const std::byte* p = crashed.contents().data() + 65536;
      const bool old = std::equal(old_data.begin(), old_data.end(), p);
      const bool zero = std::all_of(p, p + 65536, [](std::byte b) { return b == std::byte{0}; });
      ASSERT_TRUE(old || zero) << "torn zero at cut " << cut << " (zero began at " << zero_starts << ")";
      ++states;
      all_old += old;
      all_zero += zero;
    }
  }
  set_log_sink(previous);
  EXPECT_GT(all_old, 0u);
  EXPECT_GT(all_zero, 0u);
  std::printf("[ crash    ] eligible zero: %llu crash states, %llu all old, %llu all zero\n",
              static_cast<unsigned long long>(states), static_cast<unsigned long long>(all_old),
              static_cast<unsigned long long>(all_zero));
}

// T1 across replay: a write after a journaled one, over the same range, must not be
// undone when the older record is replayed after a crash.
TEST(AtomicWriterTest, ReplayNeverClobbersNewerData) {
  LogSink previous = set_log_sink([](LogLevel, std::string_view) {});
  Fixture f(options(4096));
  std::vector<std::byte> old_data(65536, std::byte{1}), new_data(4096, std::byte{2});
  EXPECT_EQ(f.writer.write(0, old_data, true, false), Method::journal);
  // 4K would go in place, but the range has a record in this epoch: journal it too.
  EXPECT_EQ(f.writer.write(0, new_data, true, false), Method::journal);
  EXPECT_EQ(f.writer.zero(8192, 4096, {}, false, false), Method::journal);
  // Crash now (everything written is on the media), then recover.
  MemoryDevice after(f.device.contents());
  MemoryJournalFile journal_after(f.file.contents());
  recover_journal(after, journal_after, kId);
  EXPECT_EQ(after.contents()[0], std::byte{2}) << "replay resurrected overwritten data";
  EXPECT_EQ(after.contents()[8192], std::byte{0}) << "replay resurrected zeroed data";
  EXPECT_EQ(after.contents()[4096], std::byte{1});
  set_log_sink(previous);
}

TEST(AtomicWriterTest, FlushCheckpointsTheJournal) {
  Fixture f(options(4096));
  std::vector<std::byte> data(65536, std::byte{3});
  f.writer.write(0, data, true, false);
  EXPECT_GT(f.journal.record_bytes(), 0u);
  f.writer.flush();
  EXPECT_EQ(f.journal.record_bytes(), 0u);
  EXPECT_EQ(f.writer.stats().checkpoints, 1u);
  EXPECT_EQ(f.writer.method_for(0, 4096, true), Method::in_place) << "the range is no longer journaled";
}

TEST(AtomicWriterTest, JournalSizeTriggersCheckpoint) {
  AtomicWriterOptions o = options(4096);
  o.checkpoint_bytes = 200 * 1024;
  Fixture f(o);
  std::vector<std::byte> data(65536, std::byte{4});
  for (int i = 0; i < 8; ++i) f.writer.write(65536 * i, data, true, false);
  EXPECT_GE(f.writer.stats().checkpoints, 1u);
  EXPECT_LE(f.journal.record_bytes(), o.checkpoint_bytes + 65536 + 64);
}

// D1: a FLUSH arriving while a size-triggered checkpoint is running must not return on
// the strength of that checkpoint's fdatasync, which began before a write completed.
TEST(AtomicWriterTest, FlushDuringCheckpointSyncsAgain) {
  MemoryDevice memory{std::vector<std::byte>(kSize)};
  // The first device sync blocks until released (the fault plan's observer sees it first).
  struct Gate {
    std::mutex m;
    std::condition_variable cv;
    bool first_sync_entered = false, release = false;
    int syncs = 0;
  } gate;
  testing::FaultPlan plan;
  plan.observer = [&](testing::Op op, bool) {
    if (op != testing::Op::sync) return;
    std::unique_lock lk(gate.m);
    if (++gate.syncs == 1) {
      gate.first_sync_entered = true;
      gate.cv.notify_all();
      gate.cv.wait(lk, [&] { return gate.release; });
    }
  };
  testing::FaultyDevice device(memory, &plan);
  MemoryJournalFile file;
  JournalWriter journal(file, recover_journal(memory, file, kId).header);
  AtomicWriterOptions o = options(4096);
  o.checkpoint_bytes = 32768;
  AtomicWriter writer(device, &journal, o);
  std::vector<std::byte> big(65536, std::byte{1});
  // Thread A: a journaled write that passes checkpoint_bytes, whose checkpoint blocks in sync.
  std::thread a([&] { writer.write(0, big, true, false); });
  {
    std::unique_lock lk(gate.m);
    gate.cv.wait(lk, [&] { return gate.first_sync_entered; });
  }
  // A write completes after that fdatasync began (in place: not held by the checkpoint).
  writer.write(kSize - 4096, std::vector<std::byte>(4096, std::byte{2}), true, false);
  // Thread B: FLUSH now. It must wait for A's checkpoint and then sync again.
  std::thread b([&] { writer.flush(); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (writer.stats().checkpoint_waits == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(writer.stats().checkpoint_waits, 1u) << "the FLUSH never waited for the checkpoint";
  {
    std::lock_guard lk(gate.m);
    gate.release = true;
    gate.cv.notify_all();
  }
  a.join();
  b.join();
  std::lock_guard lk(gate.m);
  EXPECT_GE(gate.syncs, 2) << "FLUSH returned without an fdatasync after the write completed";
}

// The first device sync blocks in the fault plan's observer until released; counts syncs.
struct SyncGate {
  std::mutex m;
  std::condition_variable cv;
  bool first_sync_entered = false, release = false;
  int syncs = 0;
  void observe(testing::Op op) {
    if (op != testing::Op::sync) return;
    std::unique_lock lk(m);
    if (++syncs == 1) {
      first_sync_entered = true;
      cv.notify_all();
      cv.wait(lk, [&] { return release; });
    }
  }
  void wait_first() {
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return first_sync_entered; });
  }
  void open() {
    std::lock_guard lk(m);
    release = true;
    cv.notify_all();
  }
};

// Waits (up to 30 s, then fails the test) until `n` sync requests wait behind a running sync.
bool wait_for_sync_waiters(const AtomicWriter& writer, uint64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (writer.stats().sync_waits < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Runs one FUA write (in place: it needs a device sync) that blocks in the first sync,
// then `n` more FUA writes that arrive while it runs; returns each one's errno (0: ok),
// the first write's first.
std::vector<int> fua_writes_behind_a_sync(AtomicWriter& writer, SyncGate& gate, int n,
                                          const std::function<void()>& before_release) {
  const std::vector<std::byte> block(4096, std::byte{3});
  int first_err = -1;
  std::thread first([&] {
    try {
      writer.write(0, block, true, /*fua=*/true);
      first_err = 0;
    } catch (const IoError& e) {
      first_err = e.err();
    }
  });
  gate.wait_first();
  std::vector<int> errs(n, -1);
  std::vector<std::thread> later;
  for (int i = 0; i < n; ++i)
    later.emplace_back([&, i] {
      try {
        writer.write(uint64_t(i + 1) * 4096, block, true, /*fua=*/true);
        errs[i] = 0;
      } catch (const IoError& e) {
        errs[i] = e.err();
      }
    });
  const bool all_waiting = wait_for_sync_waiters(writer, n);
  before_release();
  gate.open();
  first.join();
  for (std::thread& t : later) t.join();
  EXPECT_TRUE(all_waiting) << "the later FUA writes never waited behind the running sync";
  errs.insert(errs.begin(), first_err);  // the first write's outcome first
  return errs;
}

// A writer over a device whose first fdatasync blocks in a SyncGate until released.
struct GatedWriter {
  GatedWriter() { plan.observer = [this](testing::Op op, bool) { gate.observe(op); }; }
  MemoryDevice memory{std::vector<std::byte>(kSize)};
  SyncGate gate;
  testing::FaultPlan plan;
  testing::FaultyDevice device{memory, &plan};
  MemoryJournalFile file;
  JournalWriter journal{file, recover_journal(memory, file, kId).header};
  AtomicWriter writer{device, &journal, options(4096)};
};

// Group commit: FUA writes arriving while a device fdatasync runs cannot use it (it may
// have begun before they completed) but share the next one: n+1 requests, 2 fdatasyncs.
TEST(AtomicWriterTest, ConcurrentSyncsShareOneFdatasync) {
  GatedWriter g;
  SyncGate& gate = g.gate;
  AtomicWriter& writer = g.writer;
  const std::vector<int> errs = fua_writes_behind_a_sync(writer, gate, 3, [] {});
  EXPECT_EQ(errs, std::vector<int>(4, 0));
  std::lock_guard lk(gate.m);
  EXPECT_EQ(gate.syncs, 2) << "the three waiting FUA writes should share one fdatasync";
  const AtomicWriter::Stats st = writer.stats();
  EXPECT_EQ(st.device_syncs, 2u);
  EXPECT_EQ(st.shared_syncs, 2u);
  EXPECT_EQ(st.sync_waits, 3u);
}

// A shared fdatasync that fails fails every request that shared it, not only the one
// that ran it (otherwise a FUA write would be acknowledged on a failed sync).
TEST(AtomicWriterTest, FailedSharedSyncFailsEverySharer) {
  GatedWriter g;
  SyncGate& gate = g.gate;
  testing::FaultPlan& plan = g.plan;
  AtomicWriter& writer = g.writer;
  // The first sync has already been judged (it succeeds); the next one fails.
  const std::vector<int> errs =
      fua_writes_behind_a_sync(writer, gate, 3, [&] { plan.fail_next({testing::Op::sync}, 1); });
  EXPECT_EQ(errs, (std::vector<int>{0, EIO, EIO, EIO}));
  EXPECT_TRUE(writer.failed());
  std::lock_guard lk(gate.m);
  EXPECT_EQ(gate.syncs, 2);
}

// The running sync fails while FUA writes and a FLUSH wait behind it: none of them may
// run a fresh sync and succeed (the kernel reports a writeback error once, so that sync
// would succeed without covering what the failed one dropped).
TEST(AtomicWriterTest, WaitersBehindAFailingSyncFailToo) {
  GatedWriter g;
  SyncGate& gate = g.gate;
  testing::FaultPlan& plan = g.plan;
  JournalWriter& journal = g.journal;
  AtomicWriter& writer = g.writer;
  ASSERT_EQ(writer.write(65536, std::vector<std::byte>(65536, std::byte{9}), true, false), Method::journal);
  const uint64_t records = journal.record_bytes();
  plan.fail_next({testing::Op::sync}, 1);  // the first sync (blocked in the gate) fails
  int flush_err = -1;
  std::thread flusher;
  const std::vector<int> errs = fua_writes_behind_a_sync(writer, gate, 3, [&] {
    flusher = std::thread([&] {
      try {
        writer.flush();
        flush_err = 0;
      } catch (const IoError& e) {
        flush_err = e.err();
      }
    });
    EXPECT_TRUE(wait_for_sync_waiters(writer, 4)) << "the FLUSH never waited behind the sync";
  });
  flusher.join();
  EXPECT_EQ(errs, std::vector<int>(4, EIO));
  EXPECT_EQ(flush_err, EIO);
  std::lock_guard lk(gate.m);
  EXPECT_EQ(gate.syncs, 1) << "a waiter ran a fresh sync after the one it waited for failed";
  EXPECT_EQ(journal.record_bytes(), records) << "the journal was reset after a failed sync";
}

// A durable write that fails with EIO may have carried the file's only report of an
// earlier writeback error (the kernel syncs inside it): the writer fences itself as after
// a failed fdatasync.
TEST(AtomicWriterTest, FailedDurableWriteFencesLikeAFailedSync) {
  MemoryDevice memory{std::vector<std::byte>(kSize)};
  memory.set_durable_writes(true);
  testing::FaultyDevice device(memory);
  MemoryJournalFile file;
  JournalWriter journal(file, recover_journal(memory, file, kId).header);
  AtomicWriter writer(device, &journal, options(4096));
  device.fail_writes(1, EIO);
  EXPECT_THROW(writer.write(0, std::vector<std::byte>(4096, std::byte{1}), true, /*fua=*/true), IoError);
  EXPECT_TRUE(writer.failed());
  try {
    writer.flush();
    ADD_FAILURE() << "a flush after a failed durable write succeeded";
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), EIO);
    EXPECT_NE(std::string(e.what()).find("a durable write of the backing failed earlier ("), std::string::npos)
        << e.what();
  }
  // A plain write failing (not durable) fails that request only, as before.
  MemoryDevice memory2{std::vector<std::byte>(kSize)};
  memory2.set_durable_writes(true);
  testing::FaultyDevice device2(memory2);
  MemoryJournalFile file2;
  JournalWriter journal2(file2, recover_journal(memory2, file2, kId).header);
  AtomicWriter writer2(device2, &journal2, options(4096));
  device2.fail_writes(1, EIO);
  EXPECT_THROW(writer2.write(0, std::vector<std::byte>(4096, std::byte{1}), true, /*fua=*/false), IoError);
  EXPECT_FALSE(writer2.failed());
  EXPECT_NO_THROW(writer2.flush());
}

// FUA on a device with durable writes (RWF_DSYNC): each in-place FUA write is durable
// when it completes, with no device fdatasync. Every crash state of a run of FUA writes
// (beside plain ones, which may be lost) holds each FUA write that had returned. Returns
// the number of states that lost one; `honour` false makes the device lie (claims durable
// writes, keeps them volatile): the negative control, which must lose some.
uint64_t states_losing_a_returned_fua_write(bool honour, uint64_t* states_out) {
  testing::CrashRecorder recorder;
  MemoryDevice device(std::vector<std::byte>(kSize), &recorder);
  device.set_durable_writes(true, honour);
  MemoryJournalFile journal_file({}, &recorder);
  JournalWriter journal(journal_file, recover_journal(device, journal_file, kId).header);
  AtomicWriter writer(device, &journal, options(4096));
  std::vector<std::vector<std::byte>> fua_data;
  std::vector<size_t> returned_at;
  for (int i = 0; i < 24; ++i) {
    std::vector<std::byte> plain(4096, std::byte(0x80 + i));
    EXPECT_EQ(writer.write(uint64_t(2 * i + 1) * 4096, plain, true, /*fua=*/false), Method::in_place);
    fua_data.emplace_back(4096, std::byte(i + 1));
    EXPECT_EQ(writer.write(uint64_t(2 * i) * 4096, fua_data.back(), true, /*fua=*/true), Method::in_place);
    returned_at.push_back(recorder.position());
  }
  EXPECT_EQ(writer.stats().device_syncs, 0u) << "a FUA write on a durable device ran an fdatasync";
  EXPECT_EQ(writer.stats().durable_writes, 24u);
  std::mt19937_64 rng(11);
  uint64_t states = 0, lost = 0, plain_lost = 0;
  testing::CrashStateBuilder builder(recorder, std::vector<std::byte>(kSize), {}, 512);
  for (size_t cut = 1; cut <= recorder.log().size(); ++cut) {
    const auto& pending = builder.advance(cut);
    for (int sample = 0; sample < 40; ++sample) {
      std::vector<testing::Fate> fates(pending.size());
      for (auto& fate : fates) fate = static_cast<testing::Fate>(rng() % 3);
      auto [dev, jnl] = builder.build(fates, rng);
      ++states;
      bool state_lost = false;
      for (size_t i = 0; i < returned_at.size() && returned_at[i] <= cut; ++i) {
        state_lost |= !std::equal(fua_data[i].begin(), fua_data[i].end(), dev.begin() + 2 * i * 4096);
        plain_lost += dev[(2 * i + 1) * 4096] != std::byte(0x80 + i);
      }
      lost += state_lost;
    }
  }
  EXPECT_GT(plain_lost, 0u) << "the crash model never dropped a plain write: it tests nothing";
  *states_out = states;
  return lost;
}

TEST(AtomicWriterTest, FuaWritesOnADurableDeviceSurviveEveryCrashWithoutAFdatasync) {
  uint64_t states = 0;
  EXPECT_EQ(states_losing_a_returned_fua_write(/*honour=*/true, &states), 0u);
  uint64_t control_states = 0;
  const uint64_t control_lost = states_losing_a_returned_fua_write(/*honour=*/false, &control_states);
  EXPECT_GT(control_lost, 0u) << "negative control: a device that drops durable writes must lose some";
  std::printf("[ crash    ] FUA by durable writes: %llu crash states, 0 lost; negative control "
              "(device ignores RWF_DSYNC): %llu of %llu states lost a returned FUA write\n",
              static_cast<unsigned long long>(states), static_cast<unsigned long long>(control_lost),
              static_cast<unsigned long long>(control_states));
}

// "fsyncgate": a failed device fdatasync may have dropped the in-place copies of journaled
// writes while the kernel marked them clean. A later sync that succeeds must not reset the
// journal (today's code did: the records were gone and the data with them); the writer
// refuses writes and flushes instead, and the next start replays the records.
TEST(AtomicWriterTest, FailedDeviceSyncNeverResetsTheJournal) {
  MemoryDevice memory{std::vector<std::byte>(kSize)};
  testing::FaultyDevice device(memory);
  MemoryJournalFile file;
  JournalWriter journal(file, recover_journal(memory, file, kId).header);
  AtomicWriter writer(device, &journal, options(4096));
  std::vector<std::byte> data(65536, std::byte{7});
  ASSERT_EQ(writer.write(4096, data, true, false), Method::journal);
  const uint64_t records = journal.record_bytes();
  ASSERT_GT(records, 0u);
  device.fail_syncs(1);
  EXPECT_THROW(writer.flush(), IoError);
  EXPECT_TRUE(writer.failed());
  // The disk is healthy again, but what the failed sync held may be gone.
  for (int i = 0; i < 3; ++i) {
    try {
      switch (i) {
        case 0: writer.flush(); break;
        case 1: writer.write(1 << 19, data, true, false); break;
        case 2: writer.zero(1 << 19, 65536, {}, true, false); break;
      }
      ADD_FAILURE() << "request " << i << " succeeded after a failed sync";
    } catch (const IoError& e) {
      EXPECT_EQ(e.err(), EIO);
      EXPECT_NE(std::string(e.what()).find("fdatasync failed earlier (injected sync error)"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(journal.record_bytes(), records) << "the journal was reset after a failed sync";
  // The kernel dropped the in-place write: the backing file still holds zeroes. The next
  // start replays the record.
  MemoryDevice after{std::vector<std::byte>(kSize)};
  MemoryJournalFile journal_after(file.contents());
  EXPECT_EQ(recover_journal(after, journal_after, kId).records_replayed, 1u);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), after.contents().begin() + 4096));
}

}  // namespace
}  // namespace untorn
