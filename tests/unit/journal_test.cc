// The journal's pieces: format round trip, torn tails, epochs, group commit, recovery.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "device/crc32c.h"
#include "device/journal_reader.h"
#include "device/journal_writer.h"
#include "device/recovery.h"
#include "tests/support/crash_recorder.h"
#include "tests/support/fault_injection.h"
#include "tests/support/temp_dir.h"
#include "util/io_error.h"
#include "util/log.h"

namespace untorn {
namespace {

using ::testing::HasSubstr;
using testing::MemoryDevice;
using testing::MemoryJournalFile;

const journal::Identity kId{1 << 20, 42, 7, 4096};

std::vector<std::byte> bytes(size_t n, uint8_t v) { return std::vector<std::byte>(n, std::byte{v}); }

std::vector<JournalReader::Record> read_all(JournalFile& f, const journal::Header& h, const char** why = nullptr) {
  JournalReader reader(f, h, kId.backing_size);
  std::vector<JournalReader::Record> out;
  JournalReader::Record r;
  while (reader.next(r)) out.push_back(r);
  if (why) *why = reader.stop_reason();
  return out;
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override { previous_ = set_log_sink([](LogLevel, std::string_view) {}); }
  void TearDown() override { set_log_sink(previous_); }
  LogSink previous_;
};

TEST_F(JournalTest, RecordsRoundTrip) {
  MemoryJournalFile file;
  journal::Header h{5, kId};
  write_journal_header(file, h);
  JournalWriter w(file, h);
  auto a = bytes(8192, 0xaa);
  w.commit(journal::RecordKind::data, 4096, 8192, a);
  w.commit(journal::RecordKind::zero, 65536, 4096, {});
  const char* why = "";
  auto recs = read_all(file, h, &why);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].header.sequence, 1u);
  EXPECT_EQ(recs[0].header.offset, 4096u);
  EXPECT_EQ(recs[0].data, a);
  EXPECT_EQ(recs[1].header.kind, journal::RecordKind::zero);
  EXPECT_EQ(recs[1].header.length, 4096u);
  EXPECT_TRUE(recs[1].data.empty());
  EXPECT_STREQ(why, "end of journal");
  EXPECT_EQ(w.record_bytes(), 2 * journal::kRecordHeaderSize + 8192);
}

TEST_F(JournalTest, ReaderStopsAtTornOrCorruptTail) {
  MemoryJournalFile file;
  journal::Header h{1, kId};
  write_journal_header(file, h);
  JournalWriter w(file, h);
  for (int i = 0; i < 3; ++i) w.commit(journal::RecordKind::data, 4096 * i, 4096, bytes(4096, uint8_t(i + 1)));
  const uint64_t full = file.size();
  const char* why = "";

  std::vector<std::byte> copy = file.contents();
  copy[full - 10] ^= std::byte{1};  // a flipped payload byte in the last record
  MemoryJournalFile corrupt(copy);
  EXPECT_EQ(read_all(corrupt, h, &why).size(), 2u);
  EXPECT_STREQ(why, "record checksum mismatch");

  copy = file.contents();
  copy.resize(full - 100);  // the last record cut short
  MemoryJournalFile torn(copy);
  EXPECT_EQ(read_all(torn, h, &why).size(), 2u);
  EXPECT_STREQ(why, "torn record payload at end of journal");
}

TEST_F(JournalTest, ResetMakesOldRecordsInvisibleAndReusesTheirSpace) {
  MemoryJournalFile file;
  journal::Header h{1, kId};
  write_journal_header(file, h);
  JournalWriter w(file, h);
  w.commit(journal::RecordKind::data, 0, 4096, bytes(4096, 1));
  w.commit(journal::RecordKind::data, 8192, 4096, bytes(4096, 2));
  const uint64_t full = file.size();
  w.reset();
  // The records stay where they were (no truncate: their blocks are reused) ...
  EXPECT_EQ(file.size(), full);
  journal::Header now;
  ASSERT_TRUE(journal::decode_header(std::span<const std::byte, journal::kHeaderSize>(file.contents().data(), journal::kHeaderSize), now));
  EXPECT_EQ(now.epoch, 2u);
  EXPECT_EQ(w.record_bytes(), 0u);
  // ... but records of the old epoch are never replayed.
  const char* why = "";
  EXPECT_TRUE(read_all(file, now, &why).empty());
  EXPECT_STREQ(why, "record of an earlier epoch");
  // A new record overwrites the first old one; the second old one behind it is not read.
  auto c = bytes(4096, 3);
  w.commit(journal::RecordKind::data, 4096, 4096, c);
  EXPECT_EQ(file.size(), full);
  auto recs = read_all(file, now, &why);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].header.offset, 4096u);
  EXPECT_EQ(recs[0].data, c);
  EXPECT_STREQ(why, "record of an earlier epoch");
}

TEST_F(JournalTest, GroupCommitSharesSyncs) {
  untorn::testing::TempDir dir;
  auto file = PosixJournalFile::open(dir.file("j"));
  journal::Header h{1, kId};
  write_journal_header(*file, h);
  JournalWriter w(*file, h);
  constexpr int kThreads = 8, kEach = 40;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      auto data = bytes(4096, uint8_t(t));
      for (int i = 0; i < kEach; ++i) w.commit(journal::RecordKind::data, 4096 * ((t * kEach + i) % 200), 4096, data);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(w.records(), uint64_t{kThreads * kEach});
  EXPECT_LT(w.commits(), w.records()) << "concurrent commits should share fdatasyncs";
  std::printf("[ journal  ] %llu records in %llu fdatasyncs\n", static_cast<unsigned long long>(w.records()),
              static_cast<unsigned long long>(w.commits()));
  auto recs = read_all(*file, h);
  ASSERT_EQ(recs.size(), size_t{kThreads * kEach});
  for (size_t i = 0; i < recs.size(); ++i) EXPECT_EQ(recs[i].header.sequence, i + 1);
}

TEST_F(JournalTest, FailedAppendFailsItsRecordsAndIsOverwritten) {
  MemoryJournalFile inner;
  testing::FaultPlan plan;
  testing::FaultyJournalFile file(inner, plan);  // a failed append lands in part
  journal::Header h{1, kId};
  write_journal_header(file, h);
  JournalWriter w(file, h);
  plan.fail_next({testing::Op::journal_write}, 1);
  try {
    w.commit(journal::RecordKind::data, 0, 4096, bytes(4096, 9));
    FAIL() << "commit succeeded";
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), EIO);
  }
  w.commit(journal::RecordKind::data, 8192, 4096, bytes(4096, 5));
  auto recs = read_all(file, h);
  ASSERT_EQ(recs.size(), 1u) << "the failed record must have been overwritten";
  EXPECT_EQ(recs[0].header.offset, 8192u);
  EXPECT_EQ(recs[0].header.sequence, 2u) << "a failed batch's sequence numbers are never reused";
}

TEST_F(JournalTest, RecoveryReplaysInOrderAndResets) {
  MemoryDevice device(std::vector<std::byte>(kId.backing_size));
  MemoryJournalFile file;
  auto first = recover_journal(device, file, kId);
  EXPECT_TRUE(first.initialised);
  JournalWriter w(file, first.header);
  w.commit(journal::RecordKind::data, 0, 8192, bytes(8192, 1));
  w.commit(journal::RecordKind::data, 4096, 4096, bytes(4096, 2));  // later, overlapping
  w.commit(journal::RecordKind::zero, 65536, 4096, {});
  MemoryDevice fresh(std::vector<std::byte>(kId.backing_size, std::byte{7}));
  MemoryJournalFile copy(file.contents());
  auto r = recover_journal(fresh, copy, kId);
  EXPECT_EQ(r.records_replayed, 3u);
  EXPECT_EQ(fresh.contents()[0], std::byte{1});
  EXPECT_EQ(fresh.contents()[4096], std::byte{2});
  EXPECT_EQ(fresh.contents()[65536], std::byte{0});
  EXPECT_EQ(fresh.contents()[65536 + 4096], std::byte{7});
  EXPECT_EQ(copy.size(), journal::kHeaderSize) << "recovery resets the journal";
  EXPECT_EQ(r.header.epoch, first.header.epoch + 1);
  // Recovering again replays nothing.
  EXPECT_EQ(recover_journal(fresh, copy, kId).records_replayed, 0u);
}

// T1 across a checkpoint that kept the journal's blocks: the old epoch's records behind
// the new one (here newer data for the same range than the device holds) never come back.
TEST_F(JournalTest, RecoveryAfterAResetReplaysOnlyTheNewEpoch) {
  MemoryDevice device(std::vector<std::byte>(kId.backing_size));
  MemoryJournalFile file;
  JournalWriter w(file, recover_journal(device, file, kId).header);
  w.commit(journal::RecordKind::data, 0, 4096, bytes(4096, 1));
  w.commit(journal::RecordKind::data, 8192, 8192, bytes(8192, 2));
  w.reset();  // (a checkpoint: the device holds both records by now)
  w.commit(journal::RecordKind::data, 0, 4096, bytes(4096, 3));
  // Later writes in place, after the checkpoint, not journaled: the device is newer than
  // the old epoch's record for 8192.
  MemoryDevice crashed(std::vector<std::byte>(kId.backing_size, std::byte{9}));
  MemoryJournalFile copy(file.contents());
  ASSERT_GT(copy.size(), journal::kHeaderSize + journal::kRecordHeaderSize + 4096) << "the old records are still there";
  auto r = recover_journal(crashed, copy, kId);
  EXPECT_EQ(r.records_replayed, 1u);
  EXPECT_EQ(crashed.contents()[0], std::byte{3});
  EXPECT_EQ(crashed.contents()[8192], std::byte{9}) << "a record of the old epoch was replayed";
}

TEST_F(JournalTest, ForeignJournalWithRecordsIsRefused) {
  MemoryDevice device(std::vector<std::byte>(kId.backing_size));
  MemoryJournalFile file;
  auto r = recover_journal(device, file, kId);
  JournalWriter w(file, r.header);
  w.commit(journal::RecordKind::data, 0, 4096, bytes(4096, 1));
  journal::Identity other = kId;
  other.inode = 43;
  const auto before = file.contents();
  try {
    recover_journal(device, file, other);
    FAIL() << "replayed a journal of another backing file";
  } catch (const IoError& e) {
    EXPECT_EQ(e.err(), EINVAL);
    EXPECT_THAT(e.what(), HasSubstr("holds records for another backing file (size 1048576, inode 42"));
    EXPECT_THAT(e.what(), HasSubstr("refusing to replay it"));
  }
  EXPECT_EQ(file.contents(), before) << "a refused journal must be left as it was";
  EXPECT_EQ(device.contents()[0], std::byte{0});
}

TEST_F(JournalTest, ForeignJournalWithoutRecordsIsReinitialised) {
  MemoryDevice device(std::vector<std::byte>(kId.backing_size));
  MemoryJournalFile file;
  recover_journal(device, file, kId);
  journal::Identity other = kId;
  other.backing_size = 2 << 20;
  EXPECT_NO_THROW(recover_journal(device, file, other));
}

// A failed append (its sync failed) leaves its records in the file; the next batch
// overwrites them from the same place. Where that batch is shorter, what is left of the
// failed one must never be replayed after it: the failed write would overwrite a newer
// one. (With sequence numbers reused after a failure it was.)
TEST_F(JournalTest, WhatAFailedAppendLeftBehindIsNeverReplayed) {
  MemoryDevice device(std::vector<std::byte>(kId.backing_size));
  MemoryJournalFile memory;
  testing::FaultPlan plan;
  testing::FaultyJournalFile file(memory, plan);
  JournalWriter w(file, recover_journal(device, file, kId).header);
  plan.fail_next({testing::Op::journal_sync}, 1);
  const auto ones = bytes(4096, 1), twos = bytes(4096, 2);
  const JournalWriter::Record failed[] = {
      {journal::RecordKind::data, 0, 4096, ones},
      {journal::RecordKind::data, 0, 4096, twos},  // the failed write of 2
  };
  EXPECT_THROW(w.commit_batch(failed), IoError);
  w.commit(journal::RecordKind::data, 0, 4096, bytes(4096, 3));  // acknowledged: 3 wins
  MemoryDevice after(std::vector<std::byte>(kId.backing_size));
  MemoryJournalFile copy(memory.contents());
  auto r = recover_journal(after, copy, kId);
  EXPECT_EQ(r.records_replayed, 1u);
  EXPECT_STREQ(r.stop_reason, "sequence not increasing");
  EXPECT_EQ(after.contents()[0], std::byte{3}) << "a failed write was replayed over a newer one";
}

// The journal names its backing file by size, inode, L and birth time, never by device
// number: a version 1 journal (which held st_dev where birth time is now) is still
// replayed when size, inode and L match; a version 2 one with another birth time (the
// file was recreated) is refused.
TEST_F(JournalTest, IdentityIsBirthTimeNotDeviceNumber) {
  MemoryDevice device(std::vector<std::byte>(kId.backing_size));
  MemoryJournalFile file;
  JournalWriter w(file, recover_journal(device, file, kId).header);
  w.commit(journal::RecordKind::data, 0, 4096, bytes(4096, 5));
  {
    journal::Identity recreated = kId;
    recreated.birth_time_ns += 1;
    MemoryJournalFile copy(file.contents());
    EXPECT_THROW(recover_journal(device, copy, recreated), IoError);
  }
  // The same journal as version 1 wrote it: version 1, st_dev 2049 at byte 40, CRC redone.
  std::vector<std::byte> v1 = file.contents();
  journal::put32(v1.data() + 8, 1);
  journal::put64(v1.data() + 40, 2049);
  journal::put32(v1.data() + 12, 0);
  journal::put32(v1.data() + 12, crc32c(0, v1.data(), journal::kHeaderSize));
  MemoryJournalFile old(v1);
  journal::Identity now = kId;
  now.birth_time_ns = 123456789;
  auto r = recover_journal(device, old, now);
  EXPECT_EQ(r.records_replayed, 1u);
  EXPECT_EQ(device.contents()[0], std::byte{5});
  EXPECT_EQ(r.header.identity, now) << "recovery writes a version 2 header";
}

TEST_F(JournalTest, NotAJournalIsRefusedAndLeftAlone) {
  MemoryDevice device(std::vector<std::byte>(kId.backing_size));
  std::vector<std::byte> text(10000, std::byte{'x'});
  MemoryJournalFile file(text);
  try {
    recover_journal(device, file, kId);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_THAT(e.what(), HasSubstr("is not an untorn journal; refusing to overwrite it"));
  }
  EXPECT_EQ(file.contents(), text);
}

}  // namespace
}  // namespace untorn

namespace untorn {
namespace {

// A gathered append of more pieces than one pwritev takes (IOV_MAX) lands whole, in order.
TEST(PosixJournalFileTest, WriteGatherWritesManyPiecesInOrder) {
  untorn::testing::TempDir dir;
  auto file = PosixJournalFile::open(dir.file("j"));
  std::vector<std::vector<std::byte>> storage;
  std::vector<std::span<const std::byte>> pieces;
  std::vector<std::byte> expect;
  for (size_t i = 0; i < 3000; ++i) {
    storage.emplace_back(1 + i % 7, static_cast<std::byte>(i));
    expect.insert(expect.end(), storage.back().begin(), storage.back().end());
  }
  for (const auto& s : storage) pieces.emplace_back(s);
  pieces.emplace_back();  // an empty piece is skipped
  file->write_gather(100, pieces);
  std::vector<std::byte> got(expect.size());
  ASSERT_EQ(file->read(100, got), got.size());
  EXPECT_EQ(got, expect);
}

}  // namespace
}  // namespace untorn
