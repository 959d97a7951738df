// Fault soak: the whole cached stack (CachedPath with background writeback, AtomicWriter,
// journal) on recorded in-memory storage, driven by several threads for thousands of
// operations while a seeded FaultPlan fails reads, writes, RWF_ATOMIC writes, zeroes,
// punches, journal appends and journal and device syncs with EIO or ENOSPC. Against a
// model of each thread's own region it checks:
//   - every failed request failed with EIO or ENOSPC (nothing else, no crash, no hang);
//   - every read returns, per block, the last acknowledged write or one attempted since;
//   - at crash points cut from the recording (pending writes applied, dropped or torn; a
//     failed sync loses what it covered), after recovery: every write acknowledged and
//     covered by a successful FLUSH (or FUA) is there, or something written after it;
//     every atomic-eligible write is whole (A2); no block holds bytes nobody wrote;
//   - after the faults stop (the last round), every request succeeds and the data is
//     exactly the model's.
// Each round restarts from a crash state of the round before (recovery in between).
// UNTORN_SOAK_SEED reproduces a run (its seed is printed); UNTORN_SOAK_OPS scales it.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/cached_path.h"
#include "cache/extent_map.h"
#include "cache/mapped_device.h"
#include "device/atomic_writer.h"
#include "device/journal_writer.h"
#include "device/recovery.h"
#include "tests/support/crash_recorder.h"
#include "tests/support/fault_injection.h"
#include "util/io_error.h"
#include "util/log.h"

namespace untorn {
namespace {

using testing::CrashRecorder;
using testing::CrashStateBuilder;
using testing::Event;
using testing::FaultPlan;
using testing::Fate;
using testing::MemoryDevice;
using testing::MemoryJournalFile;
using testing::Op;

constexpr uint64_t kBlock = 4096;
constexpr unsigned kThreads = 4;
constexpr uint64_t kRegion = 1 << 20;  // per thread
constexpr uint64_t kSize = kThreads * kRegion;
constexpr uint64_t kBlocksPerRegion = kRegion / kBlock;
const journal::Identity kId{kSize, 1, 1, 4096};

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : fallback;
}

// Block contents: every 8-byte word is f(id, block), so a block names the write it came
// from, and a block mixing two writes (torn inside) or bytes nobody wrote is recognised.
uint64_t word(uint64_t id, uint64_t block, size_t i) {
  return (id * 0x9e3779b97f4a7c15ull) ^ (block << 20) ^ i;
}
void stamp(std::byte* p, uint64_t id, uint64_t block) {
  for (size_t i = 0; i < kBlock / 8; ++i) {
    const uint64_t w = word(id, block, i);
    std::memcpy(p + 8 * i, &w, 8);
  }
}
constexpr uint64_t inverse(uint64_t k) {  // of an odd k, mod 2^64 (Newton)
  uint64_t x = k;
  for (int i = 0; i < 6; ++i) x *= 2 - k * x;
  return x;
}
static_assert(0x9e3779b97f4a7c15ull * inverse(0x9e3779b97f4a7c15ull) == 1);

// 0: zeroes; UINT64_MAX: bytes no write of this test made (garbage or a torn block); else
// the id of the write the whole block came from.
uint64_t identify(const std::byte* p, uint64_t block) {
  bool zero = true;
  for (size_t i = 0; i < kBlock && zero; ++i) zero = p[i] == std::byte{0};
  if (zero) return 0;
  uint64_t first;
  std::memcpy(&first, p, 8);
  const uint64_t id = (first ^ (block << 20)) * inverse(0x9e3779b97f4a7c15ull);
  for (size_t i = 0; i < kBlock / 8; ++i) {
    uint64_t w;
    std::memcpy(&w, p + 8 * i, 8);
    if (w != word(id, block, i)) return UINT64_MAX;
  }
  return id == 0 ? UINT64_MAX : id;
}

enum class Kind { write, zero, trim, flush, read };

struct Record {
  Kind kind;
  uint64_t offset = 0, length = 0;
  uint64_t id = 0;  // writes
  bool fua = false;
  bool ok = false;
  size_t start = 0, end = 0;  // recorder positions around the call
};

// Per block of a thread's region: the ops that touched it, in order (index into ops).
struct ThreadModel {
  std::vector<Record> ops;
  std::vector<std::vector<size_t>> touched{kBlocksPerRegion};
};

struct Counters {
  std::atomic<uint64_t> ops{0}, failed{0}, bad_errno{0}, read_mismatch{0}, crash_states{0}, lost{0}, torn{0},
      garbage{0};
};

class Soak {
 public:
  Soak(uint64_t seed, uint64_t ops_per_thread) : seed_(seed), ops_per_thread_(ops_per_thread) {}

  // One round on `start` (device image) and `journal` (journal image): returns the crash
  // state chosen to start the next round from.
  std::pair<std::vector<std::byte>, std::vector<std::byte>> round(
      int number, CacheMode mode, bool faults, bool sync_faults, std::vector<std::byte> start,
      std::vector<std::byte> journal_image) {
    round_ = number;
    CrashRecorder rec;
    const std::vector<std::byte> start_device = start, start_journal = journal_image;
    MemoryDevice memory(std::move(start), &rec, /*atomic_unit_max=*/16384);
    MemoryJournalFile journal_memory(std::move(journal_image), &rec);
    FaultPlan plan(seed_ * 1000 + number);
    plan.observer = [&](Op op, bool failing) {
      if (failing && op == Op::sync) rec.append({Event::Kind::sync_failed, 0, 0, 0, {}});
      if (failing && op == Op::journal_sync) rec.append({Event::Kind::sync_failed, 1, 0, 0, {}});
    };
    testing::FaultyDevice faulty(memory, &plan);
    testing::FaultyJournalFile journal_file(journal_memory, plan);
    // Recovery at open (no faults yet): the journal of the crash state before.
    auto recovered = recover_journal(faulty, journal_file, kId);
    JournalWriter journal(journal_file, recovered.header);
    ExtentMap map(faulty, 4096, ExtentMap::Options{});
    MappedDevice mapped(faulty, map);
    AtomicWriterOptions o;
    o.atomic_write_unit_max = 65536;
    o.native_atomic_unit = 4096;
    o.checkpoint_bytes = 512 * 1024;
    AtomicWriter writer(mapped, &journal, o);
    Config::Cache c;
    c.mode = mode;
    c.size = 2 << 20;  // half the device: eviction, throttling and writeback under pressure
    c.folio_max = 64 << 10;
    c.dirty_expire = std::chrono::milliseconds(20);
    c.dirty_background_ratio = 10;
    c.dirty_ratio = 40;
    // The device as the round starts (after recovery): every block's "before" value.
    std::vector<std::byte> before(kSize);
    memory.read(0, before);
    const size_t start_pos = rec.position();

    std::vector<ThreadModel> models(kThreads);
    {
      CachedPath path(mapped, map, writer, c, 4096, 65536);
      path.start_background();
      if (faults) {
        plan.fail_randomly({Op::read}, 0.01, {EIO});
        plan.fail_randomly({Op::write, Op::atomic_write}, 0.02, {EIO, ENOSPC});
        plan.fail_randomly({Op::zero, Op::punch}, 0.02, {EIO, ENOSPC});
        plan.fail_randomly({Op::journal_write}, 0.02, {EIO, ENOSPC});
        plan.fail_randomly({Op::journal_sync}, 0.02, {EIO});
        if (sync_faults) plan.fail_randomly({Op::sync}, 0.01, {EIO});
      }
      std::vector<std::thread> threads;
      for (unsigned t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] { drive(number, t, path, rec, models[t], before, !faults); });
      for (auto& th : threads) th.join();
      plan.stop();
      if (!faults) {
        // A clean round ends with a clean shutdown: everything written back and synced.
        path.shutdown();
      }
      // Otherwise the CachedPath dies here without writing back: a crash.
    }
    std::printf("[ soak     ] round %d (%s%s): %llu faults injected, device syncs %llu, journal syncs %llu\n",
                number, mode == CacheMode::writeback ? "writeback" : mode == CacheMode::writethrough ? "writethrough" : "uncached",
                faults ? (sync_faults ? ", faults incl. device syncs" : ", faults") : ", no faults",
                static_cast<unsigned long long>(plan.injected_total()),
                static_cast<unsigned long long>(plan.calls(Op::sync)),
                static_cast<unsigned long long>(plan.calls(Op::journal_sync)));
    faults_ += plan.injected_total();

    // Crash states: cuts across the round, and the end.
    const size_t end = rec.position();
    std::mt19937_64 rng(seed_ * 7 + number);
    std::vector<size_t> cuts;
    for (int i = 0; i < 12 && end > start_pos; ++i) cuts.push_back(start_pos + rng() % (end - start_pos + 1));
    cuts.push_back(end);
    std::sort(cuts.begin(), cuts.end());
    CrashStateBuilder builder(rec, start_device, start_journal, /*device_tear=*/4096);  // the native unit
    debug_log_ = &rec.log();
    std::pair<std::vector<std::byte>, std::vector<std::byte>> last;
    for (size_t cut : cuts) {
      const auto& pending = builder.advance(cut);
      std::vector<Fate> fates(pending.size());
      // At the end of a clean round nothing is pending that matters; elsewhere, random.
      for (auto& f : fates) f = static_cast<Fate>(rng() % 3);
      auto [dev_image, jnl_image] = builder.build(fates, rng);
      MemoryDevice crashed(dev_image);
      MemoryJournalFile crashed_journal(jnl_image);
      recover_journal(crashed, crashed_journal, kId);
      check_crash_state(crashed.contents(), before, models, cut, !faults && cut == end);
      ++counters_.crash_states;
      if (cut == end) last = {crashed.contents(), crashed_journal.contents()};
    }
    return last;
  }

  const Counters& counters() const { return counters_; }
  uint64_t faults() const { return faults_; }
  std::vector<std::string>& problems() { return problems_; }

 private:
  void problem(const std::string& what) {
    std::lock_guard lk(problems_mutex_);
    if (problems_.size() < 20) problems_.push_back("round " + std::to_string(round_) + ": " + what);
  }

  void drive(int number, unsigned t, CachedPath& path, CrashRecorder& rec, ThreadModel& m,
             const std::vector<std::byte>& before, bool must_succeed) {
    std::mt19937_64 rng(seed_ * 131 + number * 17 + t);
    const uint64_t base = t * kRegion;
    std::vector<std::byte> buf(65536 * 4);
    for (uint64_t i = 0; i < ops_per_thread_; ++i) {
      Record r;
      const unsigned dice = rng() % 100;
      r.kind = dice < 52 ? Kind::write : dice < 60 ? Kind::zero : dice < 65 ? Kind::trim : dice < 72 ? Kind::flush : Kind::read;
      const uint64_t max_blocks = r.kind == Kind::write ? 16 : r.kind == Kind::read ? 32 : 64;
      const uint64_t blocks = 1 + rng() % max_blocks;
      const uint64_t first = rng() % (kBlocksPerRegion - blocks + 1);
      r.offset = base + first * kBlock;
      r.length = blocks * kBlock;
      r.fua = rng() % 10 == 0;
      if (r.kind == Kind::write) {
        r.id = (uint64_t(number) << 48) | (uint64_t(t + 1) << 32) | (i + 1);
        for (uint64_t b = 0; b < blocks; ++b) stamp(buf.data() + b * kBlock, r.id, first + b + t * kBlocksPerRegion);
      }
      r.start = rec.position();
      try {
        switch (r.kind) {
          case Kind::write: path.write(r.offset, {buf.data(), r.length}, r.fua); break;
          case Kind::zero: path.zero(r.offset, r.length, {}, r.fua); break;
          case Kind::trim: path.trim(r.offset, r.length, r.fua); break;
          case Kind::flush: path.flush(); break;
          case Kind::read: path.read(r.offset, {buf.data(), r.length}); break;
        }
        r.ok = true;
      } catch (const IoError& e) {
        if (e.err() != EIO && e.err() != ENOSPC) {
          ++counters_.bad_errno;
          problem(std::string("errno ") + std::to_string(e.err()) + ": " + e.what());
        }
        if (must_succeed) problem(std::string("a request failed after the faults stopped: ") + e.what());
        ++counters_.failed;
      } catch (const std::exception& e) {
        ++counters_.bad_errno;
        problem(std::string("not an IoError: ") + e.what());
      }
      r.end = rec.position();
      ++counters_.ops;
      if (r.kind == Kind::read && r.ok) check_read(m, r, buf, before, t, must_succeed);
      if (r.kind == Kind::read || r.kind == Kind::flush) {
        if (r.kind == Kind::flush) m.ops.push_back(r);
        continue;
      }
      m.ops.push_back(r);
      for (uint64_t b = 0; b < blocks; ++b) m.touched[first + b].push_back(m.ops.size() - 1);
    }
  }

  // Whether block content `id` (0: zeroes) could come from op `k` of the block (k = npos:
  // the block's value when the round began, `initial`).
  static bool matches(const ThreadModel& m, size_t k, uint64_t id, uint64_t initial) {
    if (k == SIZE_MAX) return id == initial;
    const Record& r = m.ops[k];
    return r.kind == Kind::write ? id == r.id : id == 0;
  }

  uint64_t initial_id(const std::vector<std::byte>& before, uint64_t block) {
    return identify(before.data() + block * kBlock, block);
  }

  void check_read(const ThreadModel& m, const Record& r, const std::vector<std::byte>& buf,
                  const std::vector<std::byte>& before, unsigned t, bool exact) {
    const uint64_t first_local = (r.offset - t * kRegion) / kBlock;
    for (uint64_t b = 0; b < r.length / kBlock; ++b) {
      const uint64_t local = first_local + b, global = local + t * kBlocksPerRegion;
      const uint64_t id = identify(buf.data() + b * kBlock, global);
      const auto& touched = m.touched[local];
      // From the last acknowledged op on: that one or any attempted since.
      size_t from = touched.size();
      while (from > 0 && !m.ops[touched[from - 1]].ok) --from;
      bool ok = false;
      if (from == 0) ok = id == initial_id(before, global);
      for (size_t k = from == 0 ? 0 : from - 1; k < touched.size() && !ok; ++k) ok = matches(m, touched[k], id, 0);
      if (exact && !touched.empty()) ok = matches(m, touched.back(), id, 0);
      if (!ok) {
        ++counters_.read_mismatch;
        problem("read of block " + std::to_string(global) + " returned " + std::to_string(id) +
                ", which is neither the last acknowledged write nor one attempted since");
      }
    }
  }

  void check_crash_state(const std::vector<std::byte>& image, const std::vector<std::byte>& before,
                         const std::vector<ThreadModel>& models, size_t cut, bool exact) {
    // D1 across connections: a successful flush covers every write acknowledged before it
    // began, on any thread. Recorder positions order them: a write whose end position is
    // below a flush's start position returned before that flush was called.
    size_t any_flush_start = 0;
    for (const auto& other : models)
      for (const Record& r : other.ops)
        if (r.kind == Kind::flush && r.ok && r.end <= cut) any_flush_start = std::max(any_flush_start, r.start);
    for (unsigned t = 0; t < kThreads; ++t) {
      const ThreadModel& m = models[t];
      // Durable floor: the last flush that succeeded and finished before the cut.
      size_t flushed_before = 0;  // ops with index < this were completed before that flush
      for (size_t k = 0; k < m.ops.size(); ++k)
        if (m.ops[k].kind == Kind::flush && m.ops[k].ok && m.ops[k].end <= cut) flushed_before = k;
      std::vector<uint64_t> seen(kBlocksPerRegion);
      for (uint64_t local = 0; local < kBlocksPerRegion; ++local) {
        const uint64_t global = local + t * kBlocksPerRegion;
        const uint64_t id = identify(image.data() + global * kBlock, global);
        seen[local] = id;
        if (id == UINT64_MAX) {
          ++counters_.garbage;
          problem("crash state at " + std::to_string(cut) + ": block " + std::to_string(global) + " holds bytes nobody wrote");
          continue;
        }
        const auto& touched = m.touched[local];
        // The floor op: the last acknowledged op before the flush, or acknowledged with FUA.
        size_t floor = SIZE_MAX;  // none: the round's initial value is acceptable
        for (size_t k = 0; k < touched.size(); ++k) {
          const Record& r = m.ops[touched[k]];
          if (r.ok && r.start < cut &&
              (touched[k] < flushed_before || r.end < any_flush_start || (r.fua && r.end <= cut)))
            floor = k;
        }
        bool ok = false;
        if (floor == SIZE_MAX) ok = id == initial_id(before, global);
        for (size_t k = floor == SIZE_MAX ? 0 : floor; k < touched.size() && !ok; ++k)
          if (m.ops[touched[k]].start < cut) ok = matches(m, touched[k], id, 0);
        if (exact) ok = touched.empty() ? id == initial_id(before, global) : matches(m, touched.back(), id, 0);
        if (!ok) {
          ++counters_.lost;
          std::string h;
          for (size_t k : touched) {
            const Record& r = m.ops[k];
            h += " [" + std::to_string(k) + (r.kind == Kind::write ? " w" + std::to_string(r.id & 0xffffffff) : r.kind == Kind::zero ? " z" : " t") +
                 (r.ok ? " ok" : " FAILED") + (r.fua ? " fua" : "") + " " + std::to_string(r.start) + "-" +
                 std::to_string(r.end) + " len " + std::to_string(r.length / kBlock) + "]";
          }
          if (std::getenv("UNTORN_SOAK_DEBUG") && debug_log_) {
            std::string ev;
            const auto& log = *debug_log_;
            for (size_t i = 0; i < log.size(); ++i) {
              const Event& e = log[i];
              const bool here = e.file == 0 && e.offset <= global * kBlock && global * kBlock < e.offset + e.length;
              const bool sync = e.kind == Event::Kind::sync || e.kind == Event::Kind::sync_failed;
              const bool jhead = e.file == 1 && e.offset == 0;
              if (!here && !sync && !jhead) continue;
              if (sync && e.file == 1) continue;
              ev += " " + std::to_string(i) + ":" + (e.file ? "J" : "D") + std::to_string(int(e.kind)) +
                    (here ? "@" + std::to_string(e.offset / kBlock) + "+" + std::to_string(e.length / kBlock) : "");
            }
            std::printf("DEBUG flush %zu: %zu-%zu events:%s\n", flushed_before, m.ops[flushed_before].start,
                        m.ops[flushed_before].end, ev.c_str());
          }
          problem("crash state at " + std::to_string(cut) + ": block " + std::to_string(global) + " holds " +
                  std::to_string(id) + ": an acknowledged, flushed write is missing; flush index " +
                  std::to_string(flushed_before) + ", history:" + h);
        }
      }
      // A2: a write seen in one block is in all of its blocks, unless something later
      // replaced it there.
      for (size_t k = 0; k < m.ops.size(); ++k) {
        const Record& r = m.ops[k];
        if (r.kind != Kind::write) continue;
        const uint64_t first = (r.offset - t * kRegion) / kBlock, n = r.length / kBlock;
        bool visible = false;
        for (uint64_t b = first; b < first + n; ++b) visible |= seen[b] == r.id;
        if (!visible) continue;
        for (uint64_t b = first; b < first + n; ++b) {
          if (seen[b] == r.id) continue;
          bool later = false;
          for (size_t op : m.touched[b])
            if (op > k && m.ops[op].start < cut && matches(m, op, seen[b], 0)) later = true;
          if (!later) {
            ++counters_.torn;
            problem("crash state at " + std::to_string(cut) + ": write " + std::to_string(r.id) + " torn at block " +
                    std::to_string(b + t * kBlocksPerRegion));
            break;
          }
        }
      }
    }
  }

  uint64_t seed_, ops_per_thread_;
  Counters counters_;
  uint64_t faults_ = 0;
  int round_ = 0;
  const std::vector<Event>* debug_log_ = nullptr;
  std::mutex problems_mutex_;
  std::vector<std::string> problems_;
};

TEST(FaultSoakTest, NothingAcknowledgedLostNothingTornUnderInjectedFaults) {
  const uint64_t seed = env_or("UNTORN_SOAK_SEED", std::random_device{}());
  const uint64_t ops = env_or("UNTORN_SOAK_OPS", 600);
  std::printf("[ soak     ] seed %llu (UNTORN_SOAK_SEED=%llu reproduces it), %llu operations per thread per round\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(ops));
  LogSink previous = set_log_sink([](LogLevel, std::string_view) {});
  Soak soak(seed, ops);
  struct RoundSpec {
    CacheMode mode;
    bool faults, sync_faults;
  };
  const RoundSpec rounds[] = {
      {CacheMode::writeback, true, false},  {CacheMode::writethrough, true, false},
      {CacheMode::uncached, true, false},   {CacheMode::writeback, true, true},
      {CacheMode::writeback, false, false},
  };
  std::vector<std::byte> device(kSize), journal;
  int number = 1;
  for (const RoundSpec& r : rounds) {
    auto next = soak.round(number++, r.mode, r.faults, r.sync_faults, device, journal);
    device = std::move(next.first);
    journal = std::move(next.second);
  }
  set_log_sink(previous);
  const Counters& c = soak.counters();
  std::printf("[ soak     ] %llu operations (%llu failed with EIO/ENOSPC), %llu faults injected, %llu crash states: "
              "%llu lost, %llu torn, %llu garbage, %llu bad read(s), %llu wrong errno(s)\n",
              (unsigned long long)c.ops.load(), (unsigned long long)c.failed.load(), (unsigned long long)soak.faults(),
              (unsigned long long)c.crash_states.load(), (unsigned long long)c.lost.load(), (unsigned long long)c.torn.load(),
              (unsigned long long)c.garbage.load(), (unsigned long long)c.read_mismatch.load(), (unsigned long long)c.bad_errno.load());
  for (const std::string& p : soak.problems()) ADD_FAILURE() << p << " (seed " << seed << ")";
  EXPECT_GT(soak.faults(), 0u);
  EXPECT_EQ(c.lost + c.torn + c.garbage + c.read_mismatch + c.bad_errno, 0u) << "seed " << seed;
}

}  // namespace
}  // namespace untorn
