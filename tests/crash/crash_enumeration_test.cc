// Crash-state enumeration (dm-log-writes style) for promise A2, D1, D2 and T1.
//
// A seeded workload runs through the real request path (DirectPath -> AtomicWriter ->
// journal) on in-memory storage that records every write and sync of the backing device
// and of the journal. From the recording we build the states a crash could leave: at a
// cut point, everything up to each file's last sync is there, and each later write is
// there, missing, or torn (a random subset of its pieces: native-atomic-unit pieces on
// the device, the storage's promise; 512-byte sectors in the journal). Recovery runs on
// each state, and the checker verifies, sector by sector (every sector names its write):
//   A2  every atomic-eligible write is whole-new or whole-old where no later write hides it;
//   D1/D2 every write covered by a completed flush, and every completed FUA write, is there
//        (or something written after it);
//   T1  nothing older than that comes back, and no sector is garbage.
// The negative control runs the same checker with the journal bypassed: it must find torn
// writes. Set UNTORN_CRASH_SEED to replay a failing seed (printed on failure).
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>
#include <sstream>

#include "cache/cached_path.h"
#include "cache/direct_path.h"
#include "device/atomic_writer.h"
#include "device/journal_writer.h"
#include "device/recovery.h"
#include "tests/support/crash_recorder.h"
#include "tests/support/sector_stamp.h"
#include "util/log.h"

namespace untorn {
namespace {

using testing::CrashRecorder;
using testing::CrashStateBuilder;
using testing::Event;
using testing::Fate;
using testing::kSector;
using testing::MemoryDevice;
using testing::MemoryJournalFile;
using testing::SectorContent;

struct Scenario {
  const char* name;
  uint32_t L;
  uint32_t A;
  uint64_t native;
  uint64_t rwf_atomic_max;  // 0: no RWF_ATOMIC
  uint64_t device_size;
  int ops;
  bool bypass_journal;
  uint64_t cache_size = 0;  // 0: DirectPath; else the folio cache of this size
  CacheMode cache_mode = CacheMode::writeback;
  bool durable_writes = false;  // the device offers durable (RWF_DSYNC) writes
  bool rados_journal = false;   // the journal is a RADOS object (RadosJournalFile's semantics)
};

struct Op {
  enum class Kind { write, zero, trim, flush } kind;
  uint64_t offset = 0, length = 0;
  bool fua = false;
  bool may_punch = false;  // zeroes: without NBD_CMD_FLAG_NO_HOLE
  bool eligible = false;
  size_t start = 0, end = 0;  // log positions before and after the op
};

struct Recording {
  CrashRecorder recorder;
  std::vector<Op> ops;  // ops[i] has id i + 1
  AtomicWriter::Stats stats;
  uint64_t direct_writes = 0;  // uncached writes that skipped the folios
};

journal::Identity identity_for(const Scenario& s) { return {s.device_size, 1, 1, s.L}; }

Recording record_workload(const Scenario& s, uint64_t seed) {
  Recording rec;
  std::mt19937_64 rng(seed);
  MemoryDevice device(std::vector<std::byte>(s.device_size), &rec.recorder, s.rwf_atomic_max);
  device.set_durable_writes(s.durable_writes);
  MemoryJournalFile journal_file({}, &rec.recorder);
  if (s.rados_journal) journal_file.use_rados_semantics();
  auto recovered = recover_journal(device, journal_file, identity_for(s));
  JournalWriter journal(journal_file, recovered.header);
  AtomicWriterOptions options;
  options.atomic_write_unit_max = s.A;
  options.native_atomic_unit = s.native;
  options.checkpoint_bytes = 256 * 1024;  // small: checkpoints happen during the run
  options.unsafe_bypass_journal = s.bypass_journal;
  // The cached path's device stack: writes reach the memory device through a MappedDevice
  // that keeps the extent map current.
  ExtentMap map(device, s.L, ExtentMap::Options{});
  MappedDevice mapped(device, map);
  AtomicWriter writer(mapped, &journal, options);
  std::unique_ptr<RequestPath> path_owner;
  if (s.cache_size) {
    // Writeback with no background threads: writeback happens, deterministically, when
    // writers hit the dirty limit or need memory, and on flush and FUA.
    Config::Cache c;
    c.size = s.cache_size;
    c.mode = s.cache_mode;
    c.folio_max = 64 * 1024;
    c.dirty_ratio = 50;
    path_owner = std::make_unique<CachedPath>(mapped, map, writer, c, s.L, s.A);
  } else {
    path_owner = std::make_unique<DirectPath>(mapped, writer, s.L, s.A);
  }
  RequestPath& path = *path_owner;

  const uint64_t blocks = s.device_size / s.L;
  for (int i = 0; i < s.ops; ++i) {
    Op op;
    const uint32_t id = static_cast<uint32_t>(i + 1);
    const unsigned r = rng() % 100;
    if (r < 72) {  // atomic-eligible write, L..A, any L-aligned offset (crossing A multiples)
      op.kind = Op::Kind::write;
      op.length = s.L * (1 + rng() % (s.A / s.L));
      op.offset = s.L * (rng() % (blocks - op.length / s.L + 1));
    } else if (r < 78) {  // not eligible: sector-aligned but not L-aligned, or larger than A
      op.kind = Op::Kind::write;
      if (s.L > kSector && rng() % 2) {
        op.length = kSector * (1 + rng() % (2 * s.L / kSector));
        op.offset = kSector * (rng() % ((s.device_size - op.length) / kSector + 1));
      } else {
        op.length = s.A + s.L * (1 + rng() % 4);
        op.offset = s.L * (rng() % (blocks - op.length / s.L + 1));
      }
    } else if (r < 84) {
      op.kind = rng() % 2 ? Op::Kind::zero : Op::Kind::trim;
      op.length = s.L * (1 + rng() % (2 * s.A / s.L));
      op.offset = s.L * (rng() % (blocks - op.length / s.L + 1));
      op.fua = rng() % 3 == 0;        // D2 for zeroes and trims too
      op.may_punch = rng() % 2 == 0;  // zeroes with and without NBD_CMD_FLAG_NO_HOLE
    } else if (r < 92) {
      op.kind = Op::Kind::flush;
    } else {  // FUA write
      op.kind = Op::Kind::write;
      op.fua = true;
      op.length = s.L * (1 + rng() % (s.A / s.L));
      op.offset = s.L * (rng() % (blocks - op.length / s.L + 1));
    }
    op.eligible = op.kind == Op::Kind::write && op.offset % s.L == 0 && op.length % s.L == 0 &&
                  op.length <= s.A;
    op.start = rec.recorder.position();
    switch (op.kind) {
      case Op::Kind::write: {
        std::vector<std::byte> data(op.length);
        testing::stamp(data, id, op.offset);
        path.write(op.offset, data, op.fua);
        break;
      }
      case Op::Kind::zero:
        path.zero(op.offset, op.length, {.may_punch = op.may_punch, .fast_only = false}, op.fua);
        break;
      case Op::Kind::trim: path.trim(op.offset, op.length, op.fua); break;
      case Op::Kind::flush: path.flush(); break;
    }
    op.end = rec.recorder.position();
    rec.ops.push_back(op);
  }
  rec.stats = writer.stats();
  if (auto* cached = dynamic_cast<CachedPath*>(path_owner.get())) rec.direct_writes = cached->counters().direct_writes;
  return rec;
}

struct Violations {
  uint64_t torn_writes = 0, lost_durable = 0, resurrected = 0, garbage = 0;
  std::string first;
  uint64_t total() const { return torn_writes + lost_durable + resurrected + garbage; }
  void note(uint64_t& counter, const std::string& what) {
    if (total() == 0) first = what;
    ++counter;
  }
};

class Checker {
 public:
  Checker(const Scenario& s, const std::vector<Op>& ops) : s_(s), ops_(ops) {
    touching_.resize(s.device_size / kSector);
    for (size_t i = 0; i < ops.size(); ++i) {
      const Op& op = ops[i];
      if (op.kind == Op::Kind::flush) continue;
      for (uint64_t x = op.offset / kSector; x < (op.offset + op.length) / kSector; ++x)
        touching_[x].push_back(i);
    }
  }

  void check(const std::vector<std::byte>& device, size_t cut, Violations& v, const std::string& where) {
    // Which ops were issued, and which are durable by contract (D1, D2), at the cut.
    std::vector<bool> issued(ops_.size()), durable(ops_.size());
    size_t last_flush_start = 0;
    bool any_flush = false;
    for (size_t i = 0; i < ops_.size(); ++i) {
      issued[i] = ops_[i].start < cut;
      if (ops_[i].kind == Op::Kind::flush && ops_[i].end <= cut) {
        last_flush_start = std::max(last_flush_start, ops_[i].start);
        any_flush = true;
      }
    }
    // D3: in writethrough mode every write, zero and trim is durable when it returns.
    const bool writethrough = s_.cache_size && s_.cache_mode == CacheMode::writethrough;
    for (size_t i = 0; i < ops_.size(); ++i)
      durable[i] = (any_flush && ops_[i].end <= last_flush_start) ||
                   ((ops_[i].fua || writethrough) && ops_[i].end <= cut);

    std::vector<SectorContent> content(touching_.size());
    for (size_t x = 0; x < touching_.size(); ++x) {
      content[x] = testing::read_stamp(device.data() + x * kSector, x * kSector);
      if (content[x].kind == SectorContent::Kind::garbage) {
        v.note(v.garbage, where + ": garbage in sector " + std::to_string(x));
        continue;
      }
      // T1 and D1/D2: the sector holds the newest durable op touching it or a later one.
      std::optional<size_t> floor;
      for (size_t i : touching_[x])
        if (issued[i] && durable[i]) floor = i;
      bool allowed = !floor && content[x].kind == SectorContent::Kind::zero;
      for (size_t i : touching_[x]) {
        if (!issued[i] || (floor && i < *floor)) continue;
        const bool zero_op = ops_[i].kind != Op::Kind::write;
        if (zero_op ? content[x].kind == SectorContent::Kind::zero
                    : content[x].kind == SectorContent::Kind::stamped && content[x].id == i + 1)
          allowed = true;
      }
      if (!allowed) {
        bool older = false;  // holds an op that a durable later op overwrote: resurrection
        for (size_t i : touching_[x])
          if (floor && i < *floor && ops_[i].kind == Op::Kind::write &&
              content[x].kind == SectorContent::Kind::stamped && content[x].id == i + 1)
            older = true;
        v.note(older ? v.resurrected : v.lost_durable,
               where + ": sector " + std::to_string(x) + " holds " +
                   (content[x].kind == SectorContent::Kind::zero ? std::string("zeroes")
                                                                 : "write " + std::to_string(content[x].id)) +
                   (floor ? ", but write " + std::to_string(*floor + 1) + " was durable" : ""));
      }
    }
    // A2: over the sectors no later issued op touches, an eligible write is all or nothing.
    for (size_t i = 0; i < ops_.size(); ++i) {
      const Op& op = ops_[i];
      if (!issued[i] || !op.eligible) continue;
      uint64_t mine = 0, visible = 0;
      for (uint64_t x = op.offset / kSector; x < (op.offset + op.length) / kSector; ++x) {
        bool hidden = false;
        for (size_t j : touching_[x])
          if (j > i && issued[j]) hidden = true;
        if (hidden) continue;
        ++visible;
        if (content[x].kind == SectorContent::Kind::stamped && content[x].id == i + 1) ++mine;
      }
      if (mine != 0 && mine != visible)
        v.note(v.torn_writes, where + ": write " + std::to_string(i + 1) + " (offset " +
                                  std::to_string(op.offset) + ", length " + std::to_string(op.length) +
                                  ") is torn: " + std::to_string(mine) + " of " +
                                  std::to_string(visible) + " visible sectors are new");
    }
  }

 private:
  const Scenario& s_;
  const std::vector<Op>& ops_;
  std::vector<std::vector<size_t>> touching_;
};

// Crash states per scenario: 4000 (three scenarios: over 10,000 a run). Sanitizer builds
// set UNTORN_CRASH_STATES lower (meson), as they run the same code 5-20 times slower.
uint64_t target_states() {
  if (const char* s = std::getenv("UNTORN_CRASH_STATES")) return std::strtoull(s, nullptr, 0);
  return 4000;
}

uint64_t seed_for(const char* name) {
  if (const char* s = std::getenv("UNTORN_CRASH_SEED")) return std::strtoull(s, nullptr, 0);
  return std::hash<std::string>{}(name) ^ 0x5eed;
}

struct EnumerationResult {
  uint64_t states = 0;
  Violations violations;
  AtomicWriter::Stats stats;
  uint64_t direct_writes = 0;
};

// Enumerates crash states of one recorded workload; stops early at `stop_after` violations.
EnumerationResult enumerate(const Scenario& s, uint64_t seed, uint64_t target_states,
                            uint64_t stop_after, bool skip_recovery = false) {
  EnumerationResult result;
  Recording rec = record_workload(s, seed);
  result.stats = rec.stats;
  result.direct_writes = rec.direct_writes;
  const auto& log = rec.recorder.log();
  Checker checker(s, rec.ops);
  std::mt19937_64 rng(seed * 7 + 1);
  const size_t cuts = log.size();
  const uint64_t per_cut = std::max<uint64_t>(1, target_states / cuts + 1);
  // First pass: every cut, all fates where few writes are pending (3^n), a seeded sample
  // otherwise. Further passes sample until the target is reached.
  for (int pass = 0; result.states < target_states; ++pass) {
    CrashStateBuilder states(rec.recorder, std::vector<std::byte>(s.device_size), {}, s.native);
    for (size_t cut = 1; cut <= cuts; ++cut) {
      const auto& pending = states.advance(cut);
      uint64_t combos = 1;
      for (size_t k = 0; k < pending.size() && combos <= per_cut; ++k) combos *= 3;
      const bool exhaustive = pass == 0 && combos <= per_cut;
      const uint64_t n = exhaustive ? combos : per_cut;
      for (uint64_t c = 0; c < n; ++c) {
        std::vector<Fate> fates(pending.size());
        uint64_t code = c;
        for (auto& f : fates) {
          unsigned pick = exhaustive ? static_cast<unsigned>(code % 3) : static_cast<unsigned>(rng() % 3);
          code /= 3;
          f = pick == 0 ? Fate::applied : pick == 1 ? Fate::dropped : Fate::torn;
        }
        auto [dev, jnl] = states.build(fates, rng);
        MemoryDevice device(std::move(dev));
        MemoryJournalFile journal(std::move(jnl));
        std::ostringstream where;
        where << s.name << " seed " << seed << " pass " << pass << " cut " << cut << "/" << cuts
              << " state " << c;
        try {
          if (!skip_recovery) recover_journal(device, journal, identity_for(s));
        } catch (const std::exception& e) {
          result.violations.note(result.violations.garbage, where.str() + ": recovery failed: " + e.what());
          continue;
        }
        checker.check(device.contents(), cut, result.violations, where.str());
        ++result.states;
        if (result.violations.total() >= stop_after) return result;
      }
    }
  }
  return result;
}

void report(const Scenario& s, const EnumerationResult& r) {
  std::printf("[ crash    ] %s: %llu crash states checked; writes in place %llu, RWF_ATOMIC %llu, "
              "journaled %llu, checkpoints %llu; violations: torn %llu, lost durable %llu, "
              "resurrected %llu, garbage %llu\n",
              s.name, static_cast<unsigned long long>(r.states),
              static_cast<unsigned long long>(r.stats.in_place),
              static_cast<unsigned long long>(r.stats.rwf_atomic),
              static_cast<unsigned long long>(r.stats.journaled),
              static_cast<unsigned long long>(r.stats.checkpoints),
              static_cast<unsigned long long>(r.violations.torn_writes),
              static_cast<unsigned long long>(r.violations.lost_durable),
              static_cast<unsigned long long>(r.violations.resurrected),
              static_cast<unsigned long long>(r.violations.garbage));
}

class CrashEnumerationTest : public ::testing::TestWithParam<Scenario> {
 protected:
  // Recovery logs every replay; thousands of them would drown the report.
  void SetUp() override { previous_ = set_log_sink([](LogLevel, std::string_view) {}); }
  void TearDown() override { set_log_sink(previous_); }
  LogSink previous_;
};

TEST_P(CrashEnumerationTest, EveryCrashStateRecoversWhole) {
  const Scenario& s = GetParam();
  const uint64_t seed = seed_for(s.name);
  EnumerationResult r = enumerate(s, seed, target_states(), 1);
  report(s, r);
  EXPECT_EQ(r.violations.total(), 0u) << r.violations.first << "\n(replay with UNTORN_CRASH_SEED=" << seed << ")";
  EXPECT_GE(r.states, target_states());
  EXPECT_GT(r.stats.journaled, 0u) << "the workload must exercise the journal";
  EXPECT_GT(r.stats.checkpoints, 0u) << "the workload must exercise checkpoints";
  if (s.durable_writes) {
    EXPECT_GT(r.stats.durable_writes, 0u) << "the workload must make writes durable by RWF_DSYNC";
  }
  if (s.cache_size && s.cache_mode == CacheMode::uncached) {
    EXPECT_GT(r.direct_writes, 0u) << "the workload must send uncached writes straight to the device";
  }
}

// A crash during recovery is recovered by the next open: recovery is recorded like the
// workload, crashed at every point, recovered again, and must give the same device as one
// clean recovery.
TEST(CrashEnumerationRecovery, CrashDuringRecoveryIsRecoveredByTheNextOpen) {
  LogSink previous = set_log_sink([](LogLevel, std::string_view) {});
  Scenario s{"recovery", 4096, 65536, 4096, 0, 512 * 1024, 120, false};
  const uint64_t seed = seed_for(s.name);
  Recording rec = record_workload(s, seed);
  std::mt19937_64 rng(seed);
  uint64_t checked = 0, with_records = 0;
  CrashStateBuilder states(rec.recorder, std::vector<std::byte>(s.device_size), {}, s.native);
  for (size_t cut = 1; cut <= rec.recorder.log().size(); cut += 3) {
    const auto& pending = states.advance(cut);
    std::vector<Fate> fates(pending.size());
    for (auto& f : fates) f = static_cast<Fate>(rng() % 3);
    auto [dev, jnl] = states.build(fates, rng);

    MemoryDevice clean_device(dev);
    MemoryJournalFile clean_journal(jnl);
    if (recover_journal(clean_device, clean_journal, identity_for(s)).records_replayed > 0) ++with_records;

    CrashRecorder recovery_log;
    MemoryDevice device(dev, &recovery_log);
    MemoryJournalFile journal(jnl, &recovery_log);
    recover_journal(device, journal, identity_for(s));
    CrashStateBuilder during(recovery_log, dev, jnl, s.native);
    for (size_t rcut = 1; rcut <= recovery_log.log().size(); ++rcut) {
      const auto& rpending = during.advance(rcut);
      std::vector<Fate> rfates(rpending.size());
      for (auto& f : rfates) f = static_cast<Fate>(rng() % 3);
      auto [dev2, jnl2] = during.build(rfates, rng);
      MemoryDevice again(std::move(dev2));
      MemoryJournalFile again_journal(std::move(jnl2));
      recover_journal(again, again_journal, identity_for(s));
      ASSERT_TRUE(again.contents() == clean_device.contents())
          << "crash at step " << rcut << " of recovery, workload cut " << cut
          << " (UNTORN_CRASH_SEED=" << seed << ")";
      ++checked;
    }
  }
  set_log_sink(previous);
  std::printf("[ crash    ] recovery: %llu crashes during recovery checked (%llu states had records to replay)\n",
              static_cast<unsigned long long>(checked), static_cast<unsigned long long>(with_records));
  EXPECT_GT(with_records, 10u);
  EXPECT_GT(checked, 100u);
}

// Negative control for D1/D2: without recovery, a FUA write that is durable only through
// its journal record is lost, and the checker must say so.
TEST(CrashEnumerationNegativeControl, SkippingRecoveryLosesDurableWrites) {
  LogSink previous = set_log_sink([](LogLevel, std::string_view) {});
  Scenario s{"no_recovery", 4096, 65536, 4096, 0, 512 * 1024, 260, false};
  EnumerationResult r = enumerate(s, seed_for(s.name), 600, 1000000, /*skip_recovery=*/true);
  report(s, r);
  set_log_sink(previous);
  EXPECT_GT(r.violations.lost_durable, 0u) << "the checker did not notice durable writes lost on purpose";
  EXPECT_GT(r.violations.torn_writes, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Scenarios, CrashEnumerationTest,
    ::testing::Values(
        // 4K blocks on storage that promises 4K: 4K writes in place, larger ones journaled.
        Scenario{"L4K_A64K_native4K", 4096, 65536, 4096, 0, 512 * 1024, 260, false},
        // 512-byte blocks on storage that promises one sector.
        Scenario{"L512_A16K_native512", 512, 16384, 512, 0, 256 * 1024, 260, false},
        // Storage with RWF_ATOMIC up to 16K: naturally aligned writes use it, others journal.
        Scenario{"L4K_A64K_rwf16K", 4096, 65536, 4096, 16384, 512 * 1024, 260, false},
        // The same through the folio cache in writeback mode, small enough (256K for a
        // 512K device) that eviction and throttled writeback happen during the run.
        Scenario{"cache_L4K_A64K_native4K", 4096, 65536, 4096, 0, 512 * 1024, 260, false, 256 * 1024},
        Scenario{"cache_L512_A16K_native512", 512, 16384, 512, 0, 256 * 1024, 260, false, 128 * 1024},
        Scenario{"cache_L4K_A64K_rwf16K", 4096, 65536, 4096, 16384, 512 * 1024, 260, false, 256 * 1024},
        // Writethrough: every op durable at its return (D3), so far fewer states are legal.
        Scenario{"writethrough_L4K_A64K_native4K", 4096, 65536, 4096, 0, 512 * 1024, 260, false,
                 256 * 1024, CacheMode::writethrough},
        // Uncached (RWF_DONTCACHE-like): each request written back at its end, its folios
        // dropped; durable only with FUA or a flush, like writeback.
        Scenario{"uncached_L4K_A64K_native4K", 4096, 65536, 4096, 0, 512 * 1024, 260, false,
                 256 * 1024, CacheMode::uncached},
        Scenario{"uncached_L4K_A64K_rwf16K", 4096, 65536, 4096, 16384, 512 * 1024, 260, false,
                 256 * 1024, CacheMode::uncached},
        // Writethrough on storage with durable writes: its replies rest on RWF_DSYNC
        // writes instead of a device fdatasync (D3; D2 for FUA the same way).
        Scenario{"writethrough_dsync_L4K_A64K_native4K", 4096, 65536, 4096, 0, 512 * 1024, 260, false,
                 256 * 1024, CacheMode::writethrough, true},
        // Ceph RBD (RbdImage): an image of 64K objects, so the device's native unit is the
        // object (a write inside one is one RADOS op; one across a boundary is two, torn
        // apart by a crash), completed writes durable (no client cache; modelled only for
        // the writes untorn asks to be durable, the rest stay volatile until a sync: more
        // states, not fewer), and the journal a RADOS object whose every write is one op,
        // durable at return, with no sync to call. Writeback and writethrough.
        Scenario{"rbd_objects64K_L4K_A64K", 4096, 65536, 65536, 0, 512 * 1024, 260, false, 256 * 1024,
                 CacheMode::writeback, true, true},
        Scenario{"rbd_writethrough_objects64K_L4K_A64K", 4096, 65536, 65536, 0, 512 * 1024, 260, false,
                 256 * 1024, CacheMode::writethrough, true, true}),
    [](const auto& info) { return std::string(info.param.name); });

// Negative control: the same workload and checker with the journal bypassed must find torn
// writes, or the checker proves nothing.
TEST(CrashEnumerationNegativeControl, BypassingTheJournalTearsWrites) {
  LogSink previous = set_log_sink([](LogLevel, std::string_view) {});
  Scenario s{"bypass", 4096, 65536, 4096, 0, 512 * 1024, 260, true};
  EnumerationResult r = enumerate(s, seed_for(s.name), std::min<uint64_t>(4000, target_states()), 20);
  report(s, r);
  set_log_sink(previous);
  EXPECT_GT(r.violations.torn_writes, 0u) << "the checker did not notice writes torn on purpose";
}

// The same over RBD's semantics: without the journal, writes across an object boundary
// tear at it.
TEST(CrashEnumerationNegativeControl, RbdObjectsWithoutTheJournalTearAtObjectBoundaries) {
  LogSink previous = set_log_sink([](LogLevel, std::string_view) {});
  Scenario s{"rbd_bypass", 4096, 65536, 65536, 0, 512 * 1024, 260, true, 256 * 1024,
             CacheMode::writeback, true, true};
  EnumerationResult r = enumerate(s, seed_for(s.name), std::min<uint64_t>(4000, target_states()), 20);
  report(s, r);
  set_log_sink(previous);
  EXPECT_GT(r.violations.torn_writes, 0u) << "the checker did not notice writes torn at object boundaries";
}

}  // namespace
}  // namespace untorn
