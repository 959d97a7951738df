// Integration: nbdkit with the untorn plugin on a unix socket, driven by libnbd.
#include <libnbd.h>
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "tests/support/nbdkit_process.h"
#include "tests/support/temp_dir.h"

namespace untorn {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using untorn::testing::connect_nbd;
using untorn::testing::NbdHandle;
using untorn::testing::NbdkitProcess;
using untorn::testing::TempDir;

constexpr uint64_t kSize = 64 << 20;

class IntegrationTest : public ::testing::Test {
 protected:
  // nbdkit must shut down cleanly: under ASan/TSan a report at exit (a leak, a race
  // found late) shows up here as a non-zero exit.
  void TearDown() override {
    if (!server_ || !server_->running()) return;
    int status = server_->stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "nbdkit did not exit cleanly (status " << status << "):\n" << server_->stderr_text();
  }

  void start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"backing.path=" + dir_.file("disk.img"),
                                     "backing.size=" + std::to_string(kSize)};
    for (auto& a : extra) args.push_back(a);
    server_ = std::make_unique<NbdkitProcess>(dir_.path().string(), args);
    server_->start();
  }
  NbdHandle connect(untorn::testing::ConnectOptions options = {}) {
    try {
      return connect_nbd(server_->uri(), options);
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what() << "\nnbdkit said:\n" << server_->stderr_text();
      throw;
    }
  }

  TempDir dir_;
  std::unique_ptr<NbdkitProcess> server_;
};

std::vector<char> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<char> v(n);
  for (auto& b : v) b = static_cast<char>(rng());
  return v;
}

void pread_ok(nbd_handle* h, void* buf, size_t len, uint64_t off) {
  ASSERT_EQ(nbd_pread(h, buf, len, off, 0), 0) << nbd_get_error();
}

TEST_F(IntegrationTest, AdvertisesLimitsAndCapabilities) {
  start({"device.atomic_write_unit_max=128K"});
  auto h = connect();
  EXPECT_EQ(nbd_get_size(h.get()), static_cast<int64_t>(kSize));
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_MINIMUM), 4096);
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_PREFERRED), 131072);
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_MAXIMUM), 32 << 20);
  EXPECT_EQ(nbd_can_fua(h.get()), 1);
  EXPECT_EQ(nbd_can_flush(h.get()), 1);
  EXPECT_EQ(nbd_can_multi_conn(h.get()), 1);
  EXPECT_EQ(nbd_can_trim(h.get()), 1);
  EXPECT_EQ(nbd_can_zero(h.get()), 1);
  EXPECT_EQ(nbd_can_fast_zero(h.get()), 1);
  EXPECT_EQ(nbd_can_cache(h.get()), 1);
  EXPECT_EQ(nbd_can_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION), 1);
}

TEST_F(IntegrationTest, ExportDescriptionStatesAtomicLimits) {
  start({"device.logical_block_size=512", "device.atomic_write_unit_max=16K"});
  NbdHandle h(nbd_create());
  nbd_set_full_info(h.get(), 1);
  ASSERT_EQ(nbd_connect_uri(h.get(), server_->uri().c_str()), 0) << nbd_get_error();
  char* desc = nbd_get_export_description(h.get());
  ASSERT_NE(desc, nullptr) << nbd_get_error();
  EXPECT_THAT(std::string(desc), AllOf(HasSubstr("logical_block_size=512"),
                                       HasSubstr("atomic_write_unit_max=16384")));
  free(desc);
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_MINIMUM), 512);
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_PREFERRED), 16384);
}

int extent_cb(void* user_data, const char* metacontext, uint64_t offset, uint32_t* entries,
              size_t nr_entries, int* /*error*/) {
  if (std::strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
  auto* out = static_cast<std::vector<std::tuple<uint64_t, uint32_t, uint32_t>>*>(user_data);
  for (size_t i = 0; i + 1 < nr_entries; i += 2) {
    out->emplace_back(offset, entries[i], entries[i + 1]);
    offset += entries[i];
  }
  return 0;
}

// Random reads, writes, trims and zeroes, aligned and not, checked byte for byte against
// an in-memory model; block status checked against it too (E1).
TEST_F(IntegrationTest, RandomOperationsMatchAModel) {
  start();
  auto h = connect();
  std::vector<char> model(kSize, 0);
  std::mt19937_64 rng(20261121);
  for (int i = 0; i < 1500; ++i) {
    size_t len = 1 + rng() % 200000;
    if (rng() % 2) len = 4096 * (1 + rng() % 16);
    uint64_t off = rng() % (kSize - len);
    if (rng() % 2) off = off / 4096 * 4096;
    switch (rng() % 6) {
      case 0:
      case 1: {
        auto data = random_bytes(rng, len);
        uint32_t flags = rng() % 8 == 0 ? LIBNBD_CMD_FLAG_FUA : 0;
        ASSERT_EQ(nbd_pwrite(h.get(), data.data(), len, off, flags), 0) << nbd_get_error();
        std::memcpy(model.data() + off, data.data(), len);
        break;
      }
      case 2:
        ASSERT_EQ(nbd_trim(h.get(), len, off, 0), 0) << nbd_get_error();
        std::memset(model.data() + off, 0, len);
        break;
      case 3: {
        uint32_t flags = rng() % 2 ? LIBNBD_CMD_FLAG_NO_HOLE : 0;
        ASSERT_EQ(nbd_zero(h.get(), len, off, flags), 0) << nbd_get_error();
        std::memset(model.data() + off, 0, len);
        break;
      }
      case 4: {
        std::vector<std::tuple<uint64_t, uint32_t, uint32_t>> ext;
        nbd_extent_callback cb{.callback = extent_cb, .user_data = &ext, .free = nullptr};
        ASSERT_EQ(nbd_block_status(h.get(), len, off, cb, 0), 0) << nbd_get_error();
        ASSERT_FALSE(ext.empty());
        uint64_t pos = off;
        for (auto [e_off, e_len, flags] : ext) {
          ASSERT_EQ(e_off, pos);
          if (flags & LIBNBD_STATE_ZERO) {
            for (uint64_t b = e_off; b < e_off + e_len && b < off + len; ++b) {
              ASSERT_EQ(model[b], 0) << "block status says zero over data at " << b;
            }
          }
          pos += e_len;
        }
        break;
      }
      default: {
        std::vector<char> got(len);
        pread_ok(h.get(), got.data(), len, off);
        ASSERT_EQ(std::memcmp(got.data(), model.data() + off, len), 0)
            << "read mismatch at " << off << " +" << len << " (op " << i << ")";
      }
    }
  }
  ASSERT_EQ(nbd_flush(h.get(), 0), 0);
  std::vector<char> all(kSize);
  for (uint64_t off = 0; off < kSize; off += 32 << 20) pread_ok(h.get(), all.data() + off, 32 << 20, off);
  EXPECT_TRUE(all == model);

  // And the bytes really are in the backing file once the server is gone.
  h.reset();
  int status = server_->stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << server_->stderr_text();
  std::ifstream in(dir_.file("disk.img"), std::ios::binary);
  std::vector<char> file(kSize);
  in.read(file.data(), static_cast<std::streamsize>(kSize));
  EXPECT_TRUE(file == model);
}

// Four connections at once, each in its own quarter of the device, through a cache small
// enough to force writeback and eviction: writes, trims and zeroes (with and without
// NO_HOLE and FUA), reads, flushes and block status (with and without REQ_ONE) against a
// byte model. Block status never calls data zero (E1), REQ_ONE gets one extent from the
// asked offset, and a range just trimmed is reported as a hole (the extent map keeps up).
TEST_F(IntegrationTest, ConcurrentConnectionsMatchAModelWithBlockStatus) {
  start({"cache.size=4M", "cache.folio_max=256K"});
  constexpr int kConns = 4;
  constexpr uint64_t kSlice = kSize / kConns;
  std::atomic<int> failures{0};
  std::atomic<uint64_t> statuses{0}, holes_seen{0};
  auto worker = [&](int id) {
    auto fail = [&](const std::string& what) {
      ADD_FAILURE() << "connection " << id << ": " << what;
      ++failures;
    };
    NbdHandle h = connect();
    const uint64_t base = kSlice * static_cast<uint64_t>(id);
    std::vector<char> model(kSlice, 0);
    std::mt19937_64 rng(1000 + static_cast<uint64_t>(id));
    auto status = [&](uint64_t off, uint64_t len, bool req_one, bool expect_hole) {
      std::vector<std::tuple<uint64_t, uint32_t, uint32_t>> ext;
      nbd_extent_callback cb{.callback = extent_cb, .user_data = &ext, .free = nullptr};
      if (nbd_block_status(h.get(), len, base + off, cb, req_one ? LIBNBD_CMD_FLAG_REQ_ONE : 0) != 0)
        return fail(std::string("block status: ") + nbd_get_error());
      ++statuses;
      if (ext.empty() || std::get<0>(ext.front()) != base + off) return fail("block status not from the offset");
      // A range just trimmed is one hole: REQ_ONE's one extent must reach its end (the
      // longest merged extent, not a piece of it).
      if (req_one && expect_hole && std::get<1>(ext.front()) < len)
        return fail("REQ_ONE answered a trimmed range with a shorter extent: " +
                    std::to_string(std::get<1>(ext.front())) + " of " + std::to_string(len));
      for (auto [e_off, e_len, flags] : ext) {
        const uint64_t from = e_off - base, to = std::min(from + e_len, off + len);
        if (expect_hole && !(flags & LIBNBD_STATE_HOLE))
          return fail("a range just trimmed is not reported as a hole at " + std::to_string(from));
        if (flags & LIBNBD_STATE_HOLE) ++holes_seen;
        if (!(flags & LIBNBD_STATE_ZERO)) continue;
        for (uint64_t b = from; b < to; ++b)
          if (model[b] != 0) return fail("block status says zero over data at " + std::to_string(base + b));
      }
    };
    for (int i = 0; i < 600 && failures == 0; ++i) {
      size_t len = rng() % 3 ? 4096 * (1 + rng() % 48) : 1 + rng() % 300000;
      uint64_t off = rng() % (kSlice - len);
      if (rng() % 4) off = off / 4096 * 4096;
      const uint32_t fua = rng() % 6 == 0 ? LIBNBD_CMD_FLAG_FUA : 0;
      switch (rng() % 8) {
        case 0:
        case 1: {
          auto data = random_bytes(rng, len);
          if (nbd_pwrite(h.get(), data.data(), len, base + off, fua) != 0) return fail(nbd_get_error());
          std::memcpy(model.data() + off, data.data(), len);
          break;
        }
        case 2: {
          if (nbd_trim(h.get(), len, base + off, fua) != 0) return fail(nbd_get_error());
          std::memset(model.data() + off, 0, len);
          const uint64_t b = (off + 4095) / 4096 * 4096, e = (off + len) / 4096 * 4096;
          if (e > b) status(b, e - b, rng() % 2, true);
          break;
        }
        case 3: {
          const uint32_t flags = fua | (rng() % 2 ? LIBNBD_CMD_FLAG_NO_HOLE : 0);
          if (nbd_zero(h.get(), len, base + off, flags) != 0) return fail(nbd_get_error());
          std::memset(model.data() + off, 0, len);
          break;
        }
        case 4:
        case 5: status(off / 4096 * 4096, std::min<uint64_t>(kSlice - off / 4096 * 4096, len + (rng() % 2 ? kSlice : 0)), rng() % 2, false); break;
        case 6:
          if (nbd_flush(h.get(), 0) != 0) return fail(nbd_get_error());
          break;
        default: {
          std::vector<char> got(len);
          if (nbd_pread(h.get(), got.data(), len, base + off, 0) != 0) return fail(nbd_get_error());
          if (std::memcmp(got.data(), model.data() + off, len) != 0)
            return fail("read mismatch at " + std::to_string(base + off) + " +" + std::to_string(len));
        }
      }
    }
    std::vector<char> all(kSlice);
    if (nbd_pread(h.get(), all.data(), kSlice, base, 0) != 0) return fail(nbd_get_error());
    if (all != model) fail("final contents differ from the model");
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kConns; ++i) threads.emplace_back(worker, i);
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(statuses, 400u);
  EXPECT_GT(holes_seen, 50u);
}

TEST_F(IntegrationTest, MultiConnCoherence) {
  start();
  auto a = connect();
  auto b = connect();
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    size_t len = 1 + rng() % 70000;
    uint64_t off = rng() % (kSize - len);
    auto data = random_bytes(rng, len);
    nbd_handle* writer = i % 2 ? a.get() : b.get();
    nbd_handle* reader = i % 2 ? b.get() : a.get();
    ASSERT_EQ(nbd_pwrite(writer, data.data(), len, off, 0), 0) << nbd_get_error();
    std::vector<char> got(len);
    pread_ok(reader, got.data(), len, off);
    ASSERT_EQ(got, data) << "connection did not see the other's write, op " << i;
  }
  ASSERT_EQ(nbd_flush(b.get(), 0), 0) << nbd_get_error();
}

TEST_F(IntegrationTest, FuaFlushFastZeroAndCacheAreAccepted) {
  start();
  auto h = connect();
  std::vector<char> data(65536, 'x');
  EXPECT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 0, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  EXPECT_EQ(nbd_zero(h.get(), 8192, 4096, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  EXPECT_EQ(nbd_trim(h.get(), 4096, 16384, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  int fz = nbd_zero(h.get(), 1 << 20, 1 << 20, LIBNBD_CMD_FLAG_FAST_ZERO);
  if (fz != 0) { EXPECT_EQ(nbd_get_errno(), ENOTSUP) << nbd_get_error(); }
  EXPECT_EQ(nbd_cache(h.get(), 1 << 20, 0, 0), 0) << nbd_get_error();
  EXPECT_EQ(nbd_flush(h.get(), 0), 0) << nbd_get_error();
  std::vector<char> got(65536);
  pread_ok(h.get(), got.data(), got.size(), 0);
  std::vector<char> want(65536, 'x');
  std::fill(want.begin() + 4096, want.begin() + 12288, 0);
  std::fill(want.begin() + 16384, want.begin() + 20480, 0);
  EXPECT_EQ(got, want);
}

// Changing the backing file behind the server is not supported: a size change is seen at
// the next flush (and by a once-a-second check), and from then on writes fail with EIO
// and a message naming the file, while reads go on.
TEST_F(IntegrationTest, BackingFileResizedBehindTheServerRefusesWrites) {
  start();
  auto h = connect();
  std::vector<char> data(65536, 'a');
  ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0), 0) << nbd_get_error();
  std::filesystem::resize_file(dir_.file("disk.img"), kSize + (1 << 20));
  EXPECT_EQ(nbd_flush(h.get(), 0), -1);
  EXPECT_EQ(nbd_get_errno(), EIO);
  EXPECT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 65536, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EIO);
  EXPECT_EQ(nbd_zero(h.get(), 65536, 0, 0), -1);
  std::vector<char> got(65536);
  pread_ok(h.get(), got.data(), got.size(), 0);
  EXPECT_EQ(got, data);
  h.reset();
  server_->stop();
  EXPECT_THAT(server_->stderr_text(), HasSubstr("changed size behind the server"));
  server_.reset();
}

TEST_F(IntegrationTest, OutOfRangeRequestsAreRejectedWithNbdErrnos) {
  start();
  auto h = connect({.client_checks = false});
  std::vector<char> buf(8192);
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), buf.size(), kSize - 4096, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL) << nbd_get_error();
  EXPECT_EQ(nbd_pwrite(h.get(), buf.data(), buf.size(), kSize - 4096, 0), -1);
  EXPECT_EQ(nbd_get_errno(), ENOSPC) << nbd_get_error();
  EXPECT_EQ(nbd_zero(h.get(), 8192, kSize, 0), -1);
  EXPECT_EQ(nbd_get_errno(), ENOSPC) << nbd_get_error();
  EXPECT_EQ(nbd_trim(h.get(), 8192, kSize, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EINVAL) << nbd_get_error();
  // The connection survives and the data is untouched.
  EXPECT_EQ(nbd_pread(h.get(), buf.data(), 4096, kSize - 4096, 0), 0) << nbd_get_error();
  EXPECT_TRUE(std::all_of(buf.begin(), buf.begin() + 4096, [](char c) { return c == 0; }));
}

// A1 on the direct path: a reader never sees half of a concurrent atomic-eligible write.
TEST_F(IntegrationTest, NoTornReads) {
  start();
  auto w = connect();
  auto r = connect();
  constexpr size_t kUnit = 64 * 1024;
  constexpr uint64_t kOff = 3 * 4096;  // not aligned to the unit, crosses a 64K multiple
  std::atomic<bool> done{false};
  std::thread writer([&] {
    std::vector<char> buf(kUnit);
    for (int i = 0; i < 400; ++i) {
      std::fill(buf.begin(), buf.end(), static_cast<char>('a' + i % 26));
      if (nbd_pwrite(w.get(), buf.data(), kUnit, kOff, 0) != 0) break;
    }
    done = true;
  });
  int torn = 0, reads = 0;
  std::vector<char> got(kUnit);
  while (!done) {
    ASSERT_EQ(nbd_pread(r.get(), got.data(), kUnit, kOff, 0), 0) << nbd_get_error();
    ++reads;
    if (std::any_of(got.begin(), got.end(), [&](char c) { return c != got[0]; })) ++torn;
  }
  writer.join();
  EXPECT_EQ(torn, 0) << "of " << reads << " reads";
  EXPECT_GT(reads, 0);
}

TEST_F(IntegrationTest, BadConfigMakesNbdkitExitWithTheMessage) {
  start({"device.logical_block_size=3000"});
  int status = server_->wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server_->stderr_text(),
              HasSubstr("device.logical_block_size: must be a power of two from 512 to 65536, got 3000"));
}

TEST_F(IntegrationTest, BadYamlNamesKeyAndLine) {
  std::ofstream(dir_.file("disk.yaml")) << "backing:\n  path: disk.img\n  size: 64M\ndevice:\n"
                                           "  atomic_write_unit_max: 2M\n";
  server_ = std::make_unique<NbdkitProcess>(dir_.path().string(),
                                            std::vector<std::string>{"config=" + dir_.file("disk.yaml")});
  server_->start();
  int status = server_->wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server_->stderr_text(),
              HasSubstr("disk.yaml line 5: device.atomic_write_unit_max: must be at most 1M"));
}

TEST_F(IntegrationTest, YamlConfigServesAndCommandLineOverrides) {
  std::ofstream(dir_.file("disk.yaml")) << "backing:\n  path: disk.img\n  size: 16M\ndevice:\n"
                                           "  atomic_write_unit_max: 32K\n";
  server_ = std::make_unique<NbdkitProcess>(
      dir_.path().string(),
      std::vector<std::string>{dir_.file("disk.yaml"), "device.atomic_write_unit_max=256K"});
  server_->start();
  auto h = connect();
  EXPECT_EQ(nbd_get_size(h.get()), 16 << 20);
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_PREFERRED), 256 * 1024);
}

TEST_F(IntegrationTest, SizeMismatchIsRefusedAtStartup) {
  start();
  { auto h = connect(); }
  server_->stop();
  server_ = std::make_unique<NbdkitProcess>(
      dir_.path().string(),
      std::vector<std::string>{"backing.path=" + dir_.file("disk.img"), "backing.size=128M"});
  server_->start();
  int status = server_->wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server_->stderr_text(), HasSubstr("is 64M but backing.size is 128M"));
}

TEST_F(IntegrationTest, JournalNeverIsRefusedWhereWritesWouldTear) {
  start({"journal.mode=never", "device.native_atomic_unit=4096"});
  int status = server_->wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server_->stderr_text(),
              AllOf(HasSubstr("journal.mode: never is unsafe here: an atomic write of up to "
                              "device.atomic_write_unit_max (64K) at any device.logical_block_size "
                              "(4K) boundary can cross a boundary of the native atomic unit of the "
                              "backing file "),
                    HasSubstr("(4K), so atomic writes could tear"),
                    HasSubstr("use journal.mode=auto, or set device.atomic_write_unit_max to "
                              "device.logical_block_size (4K)")));
}

// A native unit as large as A is not enough: a write of A one block before a unit boundary
// crosses it.
TEST_F(IntegrationTest, JournalNeverIsRefusedWhenAlignedWritesCanCrossTheNativeUnit) {
  start({"journal.mode=never", "device.native_atomic_unit=1M", "device.atomic_write_unit_max=64K"});
  int status = server_->wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server_->stderr_text(),
              AllOf(HasSubstr("journal.mode: never is unsafe here"), HasSubstr("native atomic unit of the "
                                                                              "backing file "),
                    HasSubstr("(1M), so atomic writes could tear")));
}

TEST_F(IntegrationTest, JournalNeverIsAcceptedWhereItIsSafe) {
  start({"journal.mode=never", "device.native_atomic_unit=4096", "device.atomic_write_unit_max=4096"});
  auto h = connect();
  std::vector<char> data(4096, 'q');
  EXPECT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 0, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  EXPECT_FALSE(std::filesystem::exists(dir_.file("disk.img.journal")));
}

// After a crash with records in the journal, a backing file that is not the one the
// journal was written for (here: a copy, so another inode) must not get them replayed.
TEST_F(IntegrationTest, JournalOfAnotherBackingFileIsRefused) {
  start({"device.native_atomic_unit=4096"});
  {
    auto h = connect();
    std::vector<char> data(65536, 'j');  // above the native unit: journaled
    // FUA: written through the cache now (a plain write would wait in the cache).
    ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 0, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  }
  server_->kill_hard();  // no flush: the record stays in the journal
  ASSERT_GT(std::filesystem::file_size(dir_.file("disk.img.journal")), 4096u);
  std::filesystem::copy_file(dir_.file("disk.img"), dir_.file("copy.img"));
  std::filesystem::rename(dir_.file("copy.img"), dir_.file("disk.img"));
  const auto journal_before = std::filesystem::file_size(dir_.file("disk.img.journal"));
  start({"device.native_atomic_unit=4096"});
  int status = server_->wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server_->stderr_text(),
              AllOf(HasSubstr("holds records for another backing file"), HasSubstr("refusing to replay it")));
  EXPECT_EQ(std::filesystem::file_size(dir_.file("disk.img.journal")), journal_before);
}

// Observability: -D untorn.stats=1 logs the cache's counters at exit (and every 10 s).
TEST_F(IntegrationTest, StatsFlagLogsTheCacheCountersAtExit) {
  start({"-Duntorn.stats=1", "device.native_atomic_unit=4096"});  // the 64K write is journaled
  {
    auto h = connect();
    std::vector<char> data(65536, 's');
    ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0), 0) << nbd_get_error();
    pread_ok(h.get(), data.data(), 4096, 0);
    ASSERT_EQ(nbd_flush(h.get(), 0), 0) << nbd_get_error();
  }
  server_->stop();
  EXPECT_THAT(server_->stderr_text(),
              AllOf(HasSubstr("stats at exit: read_hits=1 read_misses=0 write_requests=1"),
                    HasSubstr("writeback_bytes=65536"), HasSubstr("journal_commits=1")));
}

// Read-only: nbdkit -r (and device.readonly) serves the file without writing it: the
// client sees a read-only export, a write is refused with EPERM, the backing file keeps
// its bytes and its modification time, and no journal is created.
class ReadOnlyTest : public IntegrationTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ReadOnlyTest, ServesWithoutWriting) {
  std::vector<char> data(65536);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + 1);
  start({"journal.mode=never", "device.native_atomic_unit=65536", "device.atomic_write_unit_max=4096"});
  {
    auto h = connect();
    ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 4096, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  }
  server_->stop();
  const auto mtime = std::filesystem::last_write_time(dir_.file("disk.img"));
  start({GetParam()});
  auto h = connect({.client_checks = false});
  EXPECT_EQ(nbd_is_read_only(h.get()), 1);
  std::vector<char> got(data.size());
  pread_ok(h.get(), got.data(), got.size(), 4096);
  EXPECT_EQ(got, data);
  std::vector<char> other(4096, 'w');
  EXPECT_EQ(nbd_pwrite(h.get(), other.data(), other.size(), 0, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EPERM) << nbd_get_error();
  EXPECT_EQ(nbd_flush(h.get(), 0), 0) << nbd_get_error();  // nothing to sync: succeeds
  h.reset();
  ASSERT_EQ(server_->stop(), 0) << server_->stderr_text();
  EXPECT_EQ(std::filesystem::last_write_time(dir_.file("disk.img")), mtime);
  EXPECT_FALSE(std::filesystem::exists(dir_.file("disk.img.journal")));
  EXPECT_THAT(server_->stderr_text(), ::testing::Not(HasSubstr("warning")));
}

// A journal holding records means the backing file may lack acknowledged writes: a
// read-only server refuses to start (and says how to recover) instead of serving an
// unrecovered view, and leaves the journal as it was.
TEST_P(ReadOnlyTest, RefusesAJournalHoldingRecords) {
  start({"device.native_atomic_unit=4096"});
  {
    auto h = connect();
    std::vector<char> data(65536, 'j');  // above the native unit: journaled
    ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 0, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  }
  server_->kill_hard();
  const auto journal_before = std::filesystem::file_size(dir_.file("disk.img.journal"));
  start({GetParam(), "device.native_atomic_unit=4096"});
  const int status = server_->wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server_->stderr_text(),
              AllOf(HasSubstr("holds 1 record(s) (65536 bytes)"),
                    HasSubstr("start untorn once read-write (without -r or device.readonly) to recover")));
  EXPECT_EQ(std::filesystem::file_size(dir_.file("disk.img.journal")), journal_before);
  // Whatever journal.mode says now: the records were left by an earlier run.
  start({GetParam(), "journal.mode=never", "device.native_atomic_unit=4096"});
  ASSERT_NE(server_->wait_exit(), 0);
  EXPECT_THAT(server_->stderr_text(), HasSubstr("holds 1 record(s) (65536 bytes)"));
  EXPECT_EQ(std::filesystem::file_size(dir_.file("disk.img.journal")), journal_before);
  // Recovered read-write once, it serves read-only with the data.
  start({"device.native_atomic_unit=4096"});
  { auto h = connect(); }
  ASSERT_EQ(server_->stop(), 0);
  start({GetParam(), "device.native_atomic_unit=4096"});
  auto h = connect();
  std::vector<char> got(65536);
  pread_ok(h.get(), got.data(), got.size(), 0);
  EXPECT_EQ(got, std::vector<char>(65536, 'j'));
}

INSTANTIATE_TEST_SUITE_P(Flag, ReadOnlyTest,
                         ::testing::Values("-r", "--readonly", "-fr", "device.readonly=true"),
                         [](const auto& info) {
                           return std::string(info.index == 0   ? "DashR"
                                              : info.index == 1 ? "LongReadonly"
                                              : info.index == 2 ? "BundledFr"
                                                                : "DeviceReadonlyKey");
                         });

// stats.file: one JSON object a line every stats.interval, and a final one at exit.
TEST_F(IntegrationTest, StatsFileGetsJsonLinesAndAFinalOne) {
  const std::string stats = dir_.file("stats.jsonl");
  start({"stats.file=" + stats, "stats.interval=1s", "device.native_atomic_unit=4096"});
  {
    auto h = connect();
    std::vector<char> data(65536, 's');
    ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 0, 0), 0) << nbd_get_error();
    ASSERT_EQ(nbd_flush(h.get(), 0), 0) << nbd_get_error();
  }
  // An interval line (final=false) appears within a few ticks; polled, with a deadline.
  auto read_lines = [&] {
    std::ifstream in(stats);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (read_lines().empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_FALSE(read_lines().empty()) << "no stats line within 20 s";
  ASSERT_EQ(server_->stop(), 0) << server_->stderr_text();
  const auto lines = read_lines();
  ASSERT_GE(lines.size(), 2u);
  for (const auto& l : lines) {
    EXPECT_THAT(l, ::testing::StartsWith("{\"format\":\"untorn-stats\",\"version\":1,\"time\":\"20"));
    EXPECT_THAT(l, ::testing::EndsWith("}}"));
  }
  EXPECT_THAT(lines.front(), HasSubstr("\"final\":false"));
  EXPECT_THAT(lines.back(), AllOf(HasSubstr("\"final\":true"),
                                  HasSubstr("\"write_requests\":{\"value\":1,\"unit\":\"requests\",\"kind\":\"total\"}"),
                                  HasSubstr("\"writeback_bytes\":{\"value\":65536,\"unit\":\"bytes\""),
                                  HasSubstr("\"journal_commits\":{\"value\":1,")));
}

TEST_F(IntegrationTest, StatsFileThatCannotBeOpenedIsRefusedAtStartup) {
  if (const char* pre = std::getenv("UNTORN_NBDKIT_PRELOAD"); pre && *pre)
    GTEST_SKIP() << "under a sanitizer preload nbdkit deadlocks in exit() on this path "
                    "(libp11-kit's destructor in freelocale, seen with gdb; not untorn's code); "
                    "the plain build runs this test";
  start({"stats.file=" + dir_.file("no-such-dir/stats.jsonl")});
  const int status = server_->wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(server_->stderr_text(), HasSubstr("stats.file: " + dir_.file("no-such-dir/stats.jsonl") +
                                                ": cannot open: No such file or directory"));
  // Refused before anything was created.
  EXPECT_FALSE(std::filesystem::exists(dir_.file("disk.img")));
  EXPECT_FALSE(std::filesystem::exists(dir_.file("disk.img.journal")));
}

// Every message goes through nbdkit's logging: with --log=null nothing reaches stderr
// (the notice of a new backing file, here); by default it comes with nbdkit's prefix.
TEST_F(IntegrationTest, MessagesGoThroughNbdkitLogging) {
  start({"--log=null"});
  { auto h = connect(); }
  ASSERT_EQ(server_->stop(), 0);
  EXPECT_EQ(server_->stderr_text(), "");
  std::filesystem::remove(dir_.file("disk.img"));
  start({"--log=stderr"});
  { auto h = connect(); }
  ASSERT_EQ(server_->stop(), 0);
  EXPECT_THAT(server_->stderr_text(), HasSubstr("nbdkit: error: info: created sparse backing file " +
                                                dir_.file("disk.img") + " of 64M"));
}

TEST_F(IntegrationTest, RestartAfterKillReplaysTheJournal) {
  start({"device.native_atomic_unit=4096"});
  std::vector<char> data(65536);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 13);
  {
    auto h = connect();
    ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 8192, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  }
  server_->kill_hard();
  start({"device.native_atomic_unit=4096"});
  auto h = connect();
  std::vector<char> got(data.size());
  pread_ok(h.get(), got.data(), got.size(), 8192);
  EXPECT_EQ(got, data);
  h.reset();
  server_->stop();
  EXPECT_THAT(server_->stderr_text(), HasSubstr("replayed 1 record(s), 65536 bytes"));
}

}  // namespace
}  // namespace untorn
