// Request fuzzer: seeded malformed and hostile NBD requests over libnbd with its own
// checks off (strict mode 0), interleaved on three connections to one untorn server, and
// compared with a model of the export.
//
// Requests: every command (read, write, zero, trim, cache, block status, flush); offsets
// aligned, unaligned, at and past the end, near 2^64; lengths zero, one byte, unaligned,
// the advertised maximum (32 MiB) and past it, up to 2^32-1 for zero and trim; every
// combination of the five NBD flags and unknown flag bits. For each, expected_errno()
// says what the client must get (README "Errors a client sees" has the table); the test
// checks that errno (0: success), that data read back equals the model byte for byte,
// that block status never calls data a hole, and at the end that the whole export equals
// the model and the server still serves. No crash, no hang (meson's timeout), no wrong
// errno. UNTORN_FUZZ_SEED reproduces a run; UNTORN_FUZZ_REQUESTS sets its length.
#include <libnbd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/support/nbdkit_process.h"
#include "tests/support/temp_dir.h"

namespace untorn {
namespace {

using testing::NbdHandle;
using testing::NbdkitProcess;
using testing::TempDir;

constexpr uint64_t kSize = 48 << 20;  // above the 32 MiB maximum: maximum-length requests fit
constexpr uint64_t kMaxRequest = 32u << 20;  // untorn's advertised maximum block size
constexpr uint32_t kKnownFlags = LIBNBD_CMD_FLAG_MASK;

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : fallback;
}

enum class Cmd { read, write, zero, trim, cache, block_status, flush };
const char* name(Cmd c) {
  static const char* n[] = {"read", "write", "zero", "trim", "cache", "block_status", "flush"};
  return n[static_cast<int>(c)];
}

// The flags each command may carry (NBD protocol; nbdkit rejects the others with EINVAL).
uint32_t allowed_flags(Cmd c) {
  switch (c) {
    case Cmd::read: return LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_DF;
    case Cmd::write: return LIBNBD_CMD_FLAG_FUA;
    case Cmd::zero: return LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_NO_HOLE | LIBNBD_CMD_FLAG_FAST_ZERO;
    case Cmd::trim: return LIBNBD_CMD_FLAG_FUA;
    case Cmd::block_status: return LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_REQ_ONE;
    case Cmd::cache: return LIBNBD_CMD_FLAG_FUA;
    case Cmd::flush: return LIBNBD_CMD_FLAG_FUA;
  }
  return 0;
}

// What the client must see for this request (0: success). The table in README
// ("Errors a client sees") is this function in words.
int expected_errno(Cmd c, uint64_t offset, uint64_t count, uint32_t flags) {
  if (c != Cmd::flush) {
    const bool in_range = count > 0 && offset <= kSize && count <= kSize - offset;
    if (!in_range) return (c == Cmd::write || c == Cmd::zero) ? ENOSPC : EINVAL;
  }
  if (flags & ~allowed_flags(c)) return EINVAL;  // unknown bits, or not for this command
  return 0;
}

struct Tally {
  uint64_t requests = 0, succeeded = 0, refused = 0, wrong = 0, data_mismatch = 0, honest_extents_broken = 0;
  std::map<std::string, uint64_t> by_outcome;
  std::vector<std::string> problems;
  void problem(const std::string& p) {
    if (problems.size() < 20) problems.push_back(p);
  }
};

struct Extent {
  uint64_t offset, length;
  uint32_t flags;
};

int collect_extents(void* user, const char* metacontext, uint64_t offset, uint32_t* entries, size_t n, int* /*error*/) {
  if (std::strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
  auto* out = static_cast<std::vector<Extent>*>(user);
  for (size_t i = 0; i + 1 < n; i += 2) {
    out->push_back({offset, entries[i], entries[i + 1]});
    offset += entries[i];
  }
  return 0;
}

TEST(RequestFuzzTest, MalformedAndHostileRequestsGetTheRightErrnoAndChangeNothing) {
  const uint64_t seed = env_or("UNTORN_FUZZ_SEED", std::random_device{}());
  const uint64_t requests = env_or("UNTORN_FUZZ_REQUESTS", 2500);
  std::printf("[ fuzz     ] seed %llu (UNTORN_FUZZ_SEED=%llu reproduces it), %llu requests on 3 connections\n",
              (unsigned long long)seed, (unsigned long long)seed, (unsigned long long)requests);
  TempDir dir;
  NbdkitProcess server(dir.path(), {"backing.path=" + dir.file("d.img"), "backing.size=" + std::to_string(kSize),
                                    "cache.size=16M"});
  server.start();
  std::vector<NbdHandle> conns;
  for (int i = 0; i < 3; ++i) {
    conns.push_back(testing::connect_nbd(server.uri(), {.client_checks = false, .allow_unaligned = true}));
    ASSERT_EQ(nbd_set_strict_mode(conns.back().get(), 0), 0);
  }
  std::vector<char> model(kSize, 0);
  std::vector<char> buf;
  std::mt19937_64 rng(seed);
  Tally t;

  auto pick_offset = [&]() -> uint64_t {
    switch (rng() % 8) {
      case 0: return rng() % kSize;
      case 1: return (rng() % (kSize / 4096)) * 4096;
      case 2: return kSize - 1 - rng() % 8192;
      case 3: return kSize;
      case 4: return kSize + 1 + rng() % 65536;
      case 5: return (uint64_t{1} << 63) + rng() % 4096;
      case 6: return UINT64_MAX - rng() % 65536;
      default: return (rng() % (kSize / 512)) * 512;
    }
  };
  auto pick_count = [&](Cmd c) -> uint64_t {
    const bool payload = c == Cmd::read || c == Cmd::write;
    switch (rng() % 9) {
      case 0: return 0;
      case 1: return 1 + rng() % 16;
      case 2: return 1 + rng() % 200000;
      case 3: return 4096 * (1 + rng() % 64);
      case 4: return kMaxRequest;
      case 5: return kMaxRequest + 1;
      case 6: return payload ? kMaxRequest - 1 : UINT32_MAX - rng() % 4096;
      case 7: return payload ? 512 * (1 + rng() % 128) : uint64_t{1} << 31;
      default: return 65536;
    }
  };

  for (uint64_t i = 0; i < requests; ++i) {
    nbd_handle* h = conns[rng() % conns.size()].get();
    const Cmd c = static_cast<Cmd>(rng() % 7);
    uint64_t offset = pick_offset();
    uint64_t count = pick_count(c);
    // Mostly in range with valid flags (so data flows and the model means something),
    // the rest hostile.
    if (rng() % 2 && c != Cmd::flush) {
      offset = rng() % kSize;
      count = std::min<uint64_t>(count == 0 ? 1 : count, kSize - offset);
    }
    uint32_t flags = static_cast<uint32_t>(rng() % 2 ? rng() & allowed_flags(c) : rng() & kKnownFlags);
    if (rng() % 20 == 0) flags |= 1u << (5 + rng() % 10);  // unknown bits
    if (c == Cmd::flush) offset = count = 0;
    int expect = expected_errno(c, offset, count, flags);
    if ((c == Cmd::read || c == Cmd::write) && count > kMaxRequest + 1) count = kMaxRequest + 1;
    int rc = 0;
    std::vector<Extent> extents;
    const uint32_t count32 = static_cast<uint32_t>(std::min<uint64_t>(count, UINT32_MAX));
    switch (c) {
      case Cmd::read:
        // Never an empty vector: libnbd declares the buffer non-null even for count 0.
        buf.assign(std::max<uint32_t>(count32, 1), 0);
        rc = nbd_pread(h, buf.data(), count32, offset, flags);
        break;
      case Cmd::write:
        buf.resize(std::max<uint32_t>(count32, 1));
        for (auto& b : buf) b = static_cast<char>(rng());
        rc = nbd_pwrite(h, buf.data(), count32, offset, flags);
        break;
      case Cmd::zero: rc = nbd_zero(h, count32, offset, flags); break;
      case Cmd::trim: rc = nbd_trim(h, count32, offset, flags); break;
      case Cmd::cache: rc = nbd_cache(h, count32, offset, flags); break;
      case Cmd::block_status:
        rc = nbd_block_status(h, count32, offset, {collect_extents, &extents, nullptr}, flags);
        break;
      case Cmd::flush: rc = nbd_flush(h, flags); break;
    }
    const int err = rc == 0 ? 0 : nbd_get_errno();
    ++t.requests;
    // A fast zero may be refused where zeroing would mean writing (NBD: ENOTSUP).
    if (c == Cmd::zero && (flags & LIBNBD_CMD_FLAG_FAST_ZERO) && expect == 0 && err == ENOTSUP) expect = ENOTSUP;
    t.by_outcome[std::string(name(c)) + " -> " + (err ? std::strerror(err) : "ok")]++;
    if (err != expect) {
      ++t.wrong;
      t.problem(std::string(name(c)) + " offset " + std::to_string(offset) + " count " + std::to_string(count) +
                " flags 0x" + [&] { char s[16]; std::snprintf(s, sizeof s, "%x", flags); return std::string(s); }() +
                ": errno " + std::to_string(err) + " (" + (rc ? nbd_get_error() : "ok") + "), want " +
                std::to_string(expect));
    }
    if (rc != 0) {
      ++t.refused;
      if (nbd_aio_is_ready(h) != 1) {
        t.problem(std::string("connection unusable after a refused ") + name(c));
        break;
      }
      continue;
    }
    ++t.succeeded;
    switch (c) {
      case Cmd::read:
        if (std::memcmp(buf.data(), model.data() + offset, count32) != 0) {
          ++t.data_mismatch;
          t.problem("read at " + std::to_string(offset) + " of " + std::to_string(count32) + " differs from the model");
        }
        break;
      case Cmd::write: std::memcpy(model.data() + offset, buf.data(), count32); break;
      case Cmd::zero:
      case Cmd::trim: std::memset(model.data() + offset, 0, count32); break;
      case Cmd::block_status:
        for (const Extent& e : extents) {
          if (!(e.flags & LIBNBD_STATE_ZERO)) continue;
          const uint64_t end = std::min(e.offset + e.length, kSize);
          if (std::any_of(model.begin() + e.offset, model.begin() + end, [](char x) { return x != 0; })) {
            ++t.honest_extents_broken;
            t.problem("block status says zero at " + std::to_string(e.offset) + "+" + std::to_string(e.length) +
                      " but the model has data there");
          }
        }
        break;
      default: break;
    }
  }
  // Whole export, read back in pieces on every connection.
  std::vector<char> back(kSize);
  for (size_t k = 0; k < conns.size(); ++k) {
    ASSERT_EQ(nbd_pread(conns[k].get(), back.data(), back.size(), 0, 0), 0) << nbd_get_error();
    EXPECT_TRUE(back == model) << "connection " << k << ": the export differs from the model (seed " << seed << ")";
  }
  ASSERT_EQ(nbd_flush(conns[0].get(), 0), 0) << nbd_get_error();
  conns.clear();
  EXPECT_EQ(server.stop(), 0) << "nbdkit did not exit cleanly: " << server.stderr_text();

  std::string outcomes;
  for (const auto& [k, n] : t.by_outcome) outcomes += " " + k + ": " + std::to_string(n) + ";";
  std::printf("[ fuzz     ] %llu requests: %llu succeeded, %llu refused; wrong errno %llu, data mismatches %llu, "
              "dishonest extents %llu\n[ fuzz     ] outcomes:%s\n",
              (unsigned long long)t.requests, (unsigned long long)t.succeeded, (unsigned long long)t.refused,
              (unsigned long long)t.wrong, (unsigned long long)t.data_mismatch,
              (unsigned long long)t.honest_extents_broken, outcomes.c_str());
  for (const std::string& p : t.problems) ADD_FAILURE() << p << " (seed " << seed << ")";
  EXPECT_EQ(t.wrong + t.data_mismatch + t.honest_extents_broken, 0u) << "seed " << seed;
}

}  // namespace
}  // namespace untorn
