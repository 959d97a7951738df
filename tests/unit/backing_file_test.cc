#include "device/backing_file.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>
#include <random>

#include "device/aligned_buffer.h"
#include "device/bounce_pool.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_data.h"
#include "util/io_error.h"
#include "util/log.h"

namespace untorn {
namespace {

using ::testing::HasSubstr;
using untorn::testing::TempDir;
using untorn::testing::pattern;

constexpr uint64_t kMiB = 1 << 20;

Config::Backing backing(const std::string& path, uint64_t size, bool resize = false) {
  Config::Backing b;
  b.path = path;
  b.size = size;
  b.resize = resize;
  return b;
}

// The IoError that f throws; fails the test when it throws nothing.
template <typename F>
IoError error_of(F&& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e;
  }
  ADD_FAILURE() << "no IoError thrown";
  return IoError(0, "");
}

// Read-only: O_RDONLY and a shared lock (read-only servers share a file, a read-write one
// is refused beside them); writes and zeroes fail with EROFS and change nothing, sync
// succeeds at once; nothing is created or resized.
TEST(BackingFileTest, ReadOnlyOpensSharedAndRefusesWrites) {
  TempDir dir;
  EXPECT_EQ(error_of([&] { BackingFile::open(backing(dir.file("none.img"), 16 * kMiB), 4096, true); }).err(),
            ENOENT);
  EXPECT_FALSE(std::filesystem::exists(dir.file("none.img")));
  std::vector<std::byte> data(4096, std::byte{0x5a});
  BackingFile::open(backing(dir.file("d.img"), 16 * kMiB), 4096)->write(0, data);
  auto ro = BackingFile::open(backing(dir.file("d.img"), 0), 4096, true);
  auto ro2 = BackingFile::open(backing(dir.file("d.img"), 0), 4096, true);
  EXPECT_TRUE(ro->readonly());
  const IoError busy = error_of([&] { BackingFile::open(backing(dir.file("d.img"), 0), 4096); });
  EXPECT_EQ(busy.err(), EBUSY);
  EXPECT_EQ(error_of([&] { BackingFile::open(backing(dir.file("d.img"), 32 * kMiB, true), 4096, true); }).err(),
            EINVAL);
  std::vector<std::byte> other(4096, std::byte{0x11});
  const IoError write = error_of([&] { ro->write(0, other); });
  EXPECT_EQ(write.err(), EROFS);
  EXPECT_THAT(write.what(), ::testing::HasSubstr("the device is read-only"));
  EXPECT_EQ(error_of([&] { ro->write_zeroes(0, 4096, {}); }).err(), EROFS);
  EXPECT_NO_THROW(ro->sync());
  std::vector<std::byte> got(4096);
  ro2->read(0, got);
  EXPECT_EQ(got, data);
  EXPECT_EQ(std::filesystem::file_size(dir.file("d.img")), 16 * kMiB);
}

TEST(BackingFileTest, CreatesSparseFileOfConfiguredSize) {
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), 16 * kMiB), 4096);
  struct stat st;
  ASSERT_EQ(stat(dir.file("d.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 16 * kMiB);
  EXPECT_EQ(st.st_blocks, 0) << "the new file should be sparse";
  EXPECT_EQ(dev->size(), 16 * kMiB);
  auto ext = dev->extents(0, 16 * kMiB);
  ASSERT_EQ(ext.size(), 1u);
  EXPECT_EQ(ext[0], (Extent{0, 16 * kMiB, false}));
}

// One batch: aligned memory goes as libaio ops, misaligned memory bounced, and a write past
// the end fails alone with its own error while the others land.
TEST(BackingFileTest, WriteBatchReportsEachWriteAndLandsTheGoodOnes) {
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), 4 * kMiB), 4096);
  AlignedBuffer aligned(8192);
  std::memcpy(aligned.data(), pattern(8192, 1).data(), 8192);
  std::vector<std::byte> misaligned_storage(4096 + 1);
  auto odd = pattern(4096, 2);
  std::memcpy(misaligned_storage.data() + 1, odd.data(), 4096);
  std::vector<WriteRequest> batch = {
      {0, aligned.span(), 0, {}},
      {65536, {misaligned_storage.data() + 1, 4096}, 0, {}},
      {4 * kMiB, aligned.span(), 0, {}},  // past the end
  };
  dev->write_batch(batch);
  EXPECT_EQ(batch[0].error, 0);
  EXPECT_EQ(batch[1].error, 0);
  EXPECT_EQ(batch[2].error, EINVAL);
  EXPECT_THAT(batch[2].message, HasSubstr("beyond the end"));
  std::vector<std::byte> got(8192);
  dev->read(0, got);
  EXPECT_EQ(got, pattern(8192, 1));
  got.resize(4096);
  dev->read(65536, got);
  EXPECT_EQ(got, odd);
}

TEST(BackingFileTest, MissingFileWithoutSizeIsRefused) {
  TempDir dir;
  IoError e = error_of([&] { BackingFile::open(backing(dir.file("none.img"), 0), 4096); });
  EXPECT_EQ(e.err(), ENOENT);
  EXPECT_THAT(e.what(), HasSubstr("does not exist, and backing.size is not set"));
}

TEST(BackingFileTest, SizeMismatchIsRefusedUnlessResizeAsked) {
  TempDir dir;
  BackingFile::open(backing(dir.file("d.img"), 4 * kMiB), 4096);
  IoError e = error_of([&] { BackingFile::open(backing(dir.file("d.img"), 8 * kMiB), 4096); });
  EXPECT_EQ(e.err(), EINVAL);
  EXPECT_THAT(e.what(), HasSubstr("is 4M but backing.size is 8M; set backing.resize=true"));
  struct stat st;
  ASSERT_EQ(stat(dir.file("d.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4 * kMiB) << "a refused open must change nothing";

  auto dev = BackingFile::open(backing(dir.file("d.img"), 8 * kMiB, true), 4096);
  EXPECT_EQ(dev->size(), 8 * kMiB);
}

TEST(BackingFileTest, ExistingFileSizeUsedWhenSizeUnset) {
  TempDir dir;
  BackingFile::open(backing(dir.file("d.img"), 4 * kMiB), 4096);
  EXPECT_EQ(BackingFile::open(backing(dir.file("d.img"), 0), 4096)->size(), 4 * kMiB);
}

TEST(BackingFileTest, SizeNotMultipleOfLogicalBlockIsRefused) {
  TempDir dir;
  std::ofstream(dir.file("odd.img")) << std::string(5000, 'x');
  IoError e = error_of([&] { BackingFile::open(backing(dir.file("odd.img"), 0), 4096); });
  EXPECT_THAT(e.what(), HasSubstr("size 5000 is not a positive multiple of device.logical_block_size (4096)"));
}

TEST(BackingFileTest, NotARegularFile) {
  TempDir dir;
  IoError e = error_of([&] { BackingFile::open(backing(dir.path().string(), 0), 4096); });
  EXPECT_THAT(e.what(), HasSubstr("is not a regular file"));
}

TEST(BackingFileTest, SecondOpenOfSameFileIsRefused) {
  TempDir dir;
  auto first = BackingFile::open(backing(dir.file("d.img"), kMiB), 4096);
  IoError e = error_of([&] { BackingFile::open(backing(dir.file("d.img"), kMiB), 4096); });
  EXPECT_EQ(e.err(), EBUSY);
  EXPECT_THAT(e.what(), HasSubstr("in use by another process"));
  first.reset();
  EXPECT_NO_THROW(BackingFile::open(backing(dir.file("d.img"), kMiB), 4096));
}

// Misaligned memory in a batch is bounced through pooled buffers (the largest, above the
// biggest class, through write()'s pieces); every write lands byte for byte, and the
// buffers come back to the pool, which stays within its bound.
TEST(BackingFileTest, MisalignedBatchBouncesEveryWriteThroughThePool) {
  BouncePool::instance().drain();
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), 32 * kMiB), 4096);
  const std::vector<uint64_t> sizes = {4096, 65536, kMiB, 9 * kMiB};
  std::vector<std::vector<std::byte>> storage;
  std::vector<WriteRequest> batch;
  uint64_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    storage.push_back(pattern(sizes[i] + 1, 10 + i));
    batch.push_back({offset, {storage.back().data() + 1, sizes[i]}, 0, {}});
    offset += sizes[i];
  }
  dev->write_batch(batch);
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_EQ(batch[i].error, 0) << batch[i].message;
    std::vector<std::byte> got(sizes[i]);
    dev->read(batch[i].offset, got);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), storage[i].begin() + 1)) << "write " << i;
  }
  EXPECT_GT(BouncePool::instance().idle_bytes(), 0u) << "no bounce buffer came back to the pool";
  EXPECT_LE(BouncePool::instance().idle_bytes(), BouncePool::kKeepBytes);
}

TEST(BackingFileTest, BouncePoolReusesAlignedBuffersAndStaysBounded) {
  BouncePool& pool = BouncePool::instance();
  pool.drain();
  std::byte* first = nullptr;
  {
    BouncePool::Lease a = pool.take(5000);
    EXPECT_EQ(a.capacity(), 8192u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % AlignedBuffer::kPageSize, 0u);
    first = a.data();
  }
  EXPECT_EQ(pool.idle_bytes(), 8192u);
  {
    BouncePool::Lease b = pool.take(6000);  // same class: the same buffer again
    EXPECT_EQ(b.data(), first);
    EXPECT_EQ(pool.idle_bytes(), 0u);
  }
  // Four 8 MiB buffers out at once; only kKeepBytes of them are kept when they return.
  pool.drain();
  {
    std::vector<BouncePool::Lease> big;
    for (int i = 0; i < 4; ++i) big.push_back(pool.take(8 * kMiB));
  }
  EXPECT_EQ(pool.idle_bytes(), BouncePool::kKeepBytes);  // one 8 MiB buffer: the bound
  // Above the largest class: allocated for the lease, never kept.
  const size_t before = pool.idle_bytes();
  { BouncePool::Lease huge = pool.take(9 * kMiB); EXPECT_GE(huge.capacity(), 9 * kMiB); }
  EXPECT_EQ(pool.idle_bytes(), before);
  pool.drain();
  EXPECT_EQ(pool.idle_bytes(), 0u);
}

// Durable writes (RWF_DSYNC through libaio's aio_rw_flags) on the O_DIRECT descriptor:
// offered there, accepted by the kernel, and landing like any write (aligned, bounced and
// past-the-end alike).
TEST(BackingFileTest, DurableWritesGoOutWithRwfDsync) {
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), 4 * kMiB), 4096);
  if (!dev->direct_io()) GTEST_SKIP() << "SKIPPED LOUDLY: no O_DIRECT here, so no durable writes to test";
  ASSERT_TRUE(dev->supports_durable_writes());
  AlignedBuffer aligned(65536);
  std::memcpy(aligned.data(), pattern(65536, 3).data(), 65536);
  auto odd = pattern(8192 + 1, 4);
  std::vector<WriteRequest> batch = {
      {0, aligned.span(), 0, {}, true},
      {kMiB, {odd.data() + 1, 8192}, 0, {}, true},
      {4 * kMiB, aligned.span(), 0, {}, true},  // past the end
  };
  dev->write_batch(batch);
  EXPECT_EQ(batch[0].error, 0) << batch[0].message;
  EXPECT_EQ(batch[1].error, 0) << batch[1].message;
  EXPECT_EQ(batch[2].error, EINVAL);
  std::vector<std::byte> got(65536);
  dev->read(0, got);
  EXPECT_EQ(got, pattern(65536, 3));
  got.resize(8192);
  dev->read(kMiB, got);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), odd.begin() + 1));
  dev.reset();
  auto ro = BackingFile::open(backing(dir.file("d.img"), 4 * kMiB), 4096, /*readonly=*/true);
  EXPECT_FALSE(ro->supports_durable_writes());
}

TEST(BackingFileTest, ReadWriteRoundTripWithAlignedAndUnalignedMemory) {
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), 4 * kMiB), 4096);
  ASSERT_EQ(4096 % dev->io_align(), 0u);
  auto data = pattern(64 * 1024 + 1, 7);
  // Unaligned memory: data.data() + 1 is odd, so O_DIRECT needs the bounce path.
  std::span<const std::byte> unaligned(data.data() + 1, 64 * 1024);
  dev->write(8192, unaligned);
  AlignedBuffer aligned(64 * 1024);
  dev->read(8192, aligned.span());
  EXPECT_EQ(std::memcmp(aligned.data(), unaligned.data(), unaligned.size()), 0);
  std::vector<std::byte> out(64 * 1024 + 1);
  dev->read(8192, std::span(out.data() + 1, 64 * 1024));
  EXPECT_EQ(std::memcmp(out.data() + 1, unaligned.data(), unaligned.size()), 0);
}

TEST(BackingFileTest, OutOfRangeAndMisalignedIoIsRefused) {
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), kMiB), 4096);
  AlignedBuffer buf(8192);
  EXPECT_EQ(error_of([&] { dev->read(kMiB - 4096, buf.span()); }).err(), EINVAL);
  EXPECT_EQ(error_of([&] { dev->write(kMiB, buf.span().first(4096)); }).err(), EINVAL);
  if (dev->direct_io() && dev->io_align() > 1) {
    EXPECT_THAT(error_of([&] { dev->read(1, buf.span().first(4096)); }).what(), HasSubstr("not aligned"));
  }
}

TEST(BackingFileTest, ZeroAndPunchReadBackZeroAndShowInExtents) {
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), 4 * kMiB), 4096);
  auto data = pattern(4 * kMiB, 3);
  dev->write(0, data);
  EXPECT_EQ(dev->extents(0, 4 * kMiB), (std::vector<Extent>{{0, 4 * kMiB, true}}));

  dev->write_zeroes(kMiB, kMiB, {.may_punch = true});
  dev->write_zeroes(3 * kMiB, 64 * 1024, {.may_punch = false});
  AlignedBuffer buf(4 * kMiB);
  dev->read(0, buf.span());
  for (uint64_t i = 0; i < 4 * kMiB; ++i) {
    bool zeroed = (i >= kMiB && i < 2 * kMiB) || (i >= 3 * kMiB && i < 3 * kMiB + 65536);
    ASSERT_EQ(buf.data()[i], zeroed ? std::byte{0} : data[i]) << "at " << i;
  }
  auto ext = dev->extents(0, 4 * kMiB);
  // The punched range is a hole. A zeroed range may be one too (ext4 reports unwritten
  // extents as holes), but no hole may cover data.
  bool punched_is_hole = false;
  for (const Extent& e : ext) {
    if (e.data) continue;
    bool in_punched = e.offset >= kMiB && e.offset + e.length <= 2 * kMiB;
    bool in_zeroed = e.offset >= 3 * kMiB && e.offset + e.length <= 3 * kMiB + 65536;
    EXPECT_TRUE(in_punched || in_zeroed) << "hole at " << e.offset << " +" << e.length;
    if (e.offset == kMiB && e.length == kMiB) punched_is_hole = true;
  }
  EXPECT_TRUE(punched_is_hole);
  uint64_t covered = 0;
  for (const Extent& e : ext) {
    EXPECT_EQ(e.offset, covered) << "extents must be contiguous";
    covered += e.length;
  }
  EXPECT_EQ(covered, 4 * kMiB);
}

TEST(BackingFileTest, ExtentsOfASubRange) {
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), 4 * kMiB), 4096);
  auto data = pattern(kMiB, 5);
  dev->write(2 * kMiB, data);
  EXPECT_EQ(dev->extents(kMiB, 2 * kMiB),
            (std::vector<Extent>{{kMiB, kMiB, false}, {2 * kMiB, kMiB, true}}));
  EXPECT_EQ(dev->extents(2 * kMiB + 4096, 8192), (std::vector<Extent>{{2 * kMiB + 4096, 8192, true}}));
}

TEST(BackingFileTest, ProbeReportsSomethingSane) {
  TempDir dir;
  auto dev = BackingFile::open(backing(dir.file("d.img"), kMiB), 4096);
  const StorageInfo& s = dev->storage();
  if (s.atomic_write_unit_max != 0) { EXPECT_LE(s.atomic_write_unit_min, s.atomic_write_unit_max); }
  if (s.physical_block_size != 0) { EXPECT_GE(s.physical_block_size, 512u); }
  EXPECT_NO_THROW(dev->sync());
}

TEST(BackingFileTest, BufferedIoWhenAskedOrWhereODirectIsRefused) {
  TempDir dir;
  Config::Backing b = backing(dir.file("d.img"), kMiB);
  b.direct_io = false;
  {
    auto dev = BackingFile::open(b, 4096);
    EXPECT_FALSE(dev->direct_io());
    EXPECT_EQ(dev->io_align(), 1u);
    auto data = pattern(8192, 9);
    dev->write(4096, data);
    std::vector<std::byte> back(8192);
    dev->read(4096, back);
    EXPECT_EQ(back, data);
  }
  // The fallback, on a filesystem that really refuses O_DIRECT: ramfs (no direct I/O at
  // all; tmpfs has accepted O_DIRECT since Linux 6.6). Mounting it needs root.
  const std::string mnt = dir.file("ramfs");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  if (::mount("ramfs", mnt.c_str(), "ramfs", 0, nullptr) != 0)
    GTEST_SKIP() << "SKIPPED LOUDLY: cannot mount a ramfs to test the O_DIRECT fallback here (" << std::strerror(errno)
                 << "; needs root)";
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string path = mnt + "/d.img";
  // The premise, checked: this filesystem refuses O_DIRECT.
  const std::string probe = mnt + "/probe";
  errno = 0;
  ASSERT_LT(::open(probe.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0644), 0);
  ASSERT_EQ(errno, EINVAL);
  ::unlink(probe.c_str());
  std::vector<std::string> logged;
  LogSink previous = set_log_sink([&](LogLevel l, std::string_view m) {
    if (l == LogLevel::warning) logged.emplace_back(m);
  });
  {
    auto dev = BackingFile::open(backing(path, kMiB), 4096);
    set_log_sink(previous);
    EXPECT_FALSE(dev->direct_io());
    EXPECT_EQ(dev->io_align(), 1u);
    EXPECT_FALSE(dev->supports_atomic_write(0, 4096)) << "RWF_ATOMIC needs the O_DIRECT descriptor";
    // Unaligned I/O works on the buffered descriptor, and data round-trips.
    auto data = pattern(5000, 11);
    dev->write(1234, data);
    dev->sync();
    std::vector<std::byte> back(5000);
    dev->read(1234, back);
    EXPECT_EQ(back, data);
  }
  set_log_sink(previous);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_THAT(logged[0], HasSubstr("the filesystem refuses O_DIRECT; using buffered I/O"));
}

}  // namespace
}  // namespace untorn
