// tests/support/fault_injection.h — fail a device or a journal file on cue or at random.
//
// Like LevelDB's fault-injection Env: FaultyDevice (a ForwardingDevice) and
// FaultyJournalFile forward every call to the real one, asking a FaultPlan first whether
// the call fails. A plan holds rules: "the next n calls of these operations fail with
// err" (chosen points) and "each call of these operations fails with probability p,
// with one of these errnos" (random points, seeded, so a run is reproducible). A call that
// fails throws IoError and changes nothing, except a journal append, which may land in
// part first (a torn append, as a full disk leaves it). An `observer` sees every call
// before the plan decides (tests gate threads or record failed syncs there). Plans are
// thread-safe. Wrappers hold references to the plan and the inner object, which must
// outlive them.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "device/forwarding_device.h"
#include "device/journal_file.h"
#include "util/io_error.h"

namespace untorn::testing {

enum class Op : unsigned {
  read, write, atomic_write, zero, punch, sync,       // the device
  journal_write, journal_sync, journal_truncate,      // the journal file
  count
};
constexpr unsigned kOps = static_cast<unsigned>(Op::count);
const char* op_name(Op op);

// A set of operations.
struct Ops {
  unsigned bits = 0;
  Ops() = default;
  Ops(std::initializer_list<Op> ops) {
    for (Op op : ops) bits |= 1u << static_cast<unsigned>(op);
  }
  bool has(Op op) const { return bits & (1u << static_cast<unsigned>(op)); }
};
// Every operation that changes the device's contents.
inline Ops device_writes() { return {Op::write, Op::atomic_write, Op::zero, Op::punch}; }

class FaultPlan {
 public:
  explicit FaultPlan(uint64_t seed = 1) : rng_(seed) {}

  // The next n calls of any of `ops` fail with err (n = 0 cancels).
  void fail_next(Ops ops, int n, int err = EIO);
  // Each call of any of `ops` fails with probability p, its errno drawn from errs.
  void fail_randomly(Ops ops, double p, std::vector<int> errs = {EIO});
  // No more faults: every rule is dropped (counts stay).
  void stop();
  // Called by the wrappers at each call: throws IoError(err, "injected <op> error").
  void check(Op op);
  // For a torn journal append: how many of `n` bytes land before the failure.
  uint64_t torn_prefix(uint64_t n);

  uint64_t calls(Op op) const { return calls_[static_cast<unsigned>(op)].load(); }
  uint64_t injected(Op op) const { return injected_[static_cast<unsigned>(op)].load(); }
  uint64_t injected_total() const;

  // Sees every call (with `failing`: the plan is about to fail it).
  std::function<void(Op, bool failing)> observer;

 private:
  struct Rule {
    Ops ops;
    int remaining = 0;      // chosen: this many more
    double probability = 0; // random
    std::vector<int> errs;
  };
  mutable std::mutex mutex_;
  std::vector<Rule> rules_;
  std::mt19937_64 rng_;
  std::array<std::atomic<uint64_t>, kOps> calls_{}, injected_{};
};

class FaultyDevice final : public ForwardingDevice {
 public:
  // With no plan, the device has its own (for the fail_* shorthands).
  explicit FaultyDevice(BlockDevice& inner, FaultPlan* plan = nullptr)
      : ForwardingDevice(inner), plan_(plan ? *plan : own_) {}

  FaultPlan& plan() { return plan_; }
  // Shorthands: the next n reads / content changes / syncs fail.
  void fail_reads(int n, int err = EIO) { plan_.fail_next({Op::read}, n, err); }
  void fail_writes(int n, int err = EIO) { plan_.fail_next(device_writes(), n, err); }
  void fail_syncs(int n, int err = EIO) { plan_.fail_next({Op::sync}, n, err); }

  void read(uint64_t offset, std::span<std::byte> dst) override {
    plan_.check(Op::read);
    ForwardingDevice::read(offset, dst);
  }
  void write(uint64_t offset, std::span<const std::byte> src) override {
    plan_.check(Op::write);
    ForwardingDevice::write(offset, src);
  }
  // One write at a time, so each can fail on its own; each goes to the inner device as a
  // batch of one, keeping its `durable` flag.
  void write_batch(std::span<WriteRequest> writes) override {
    for (WriteRequest& w : writes) {
      try {
        plan_.check(Op::write);
      } catch (const IoError& e) {
        w.error = e.err();
        w.message = e.what();
        continue;
      }
      ForwardingDevice::write_batch({&w, 1});
    }
  }
  // Whether to pass on the inner device's durable writes (tests of the fdatasync path
  // turn them off).
  void offer_durable_writes(bool offer) { offer_durable_ = offer; }
  bool supports_durable_writes() const override {
    return offer_durable_ && ForwardingDevice::supports_durable_writes();
  }
  void write_atomic(uint64_t offset, std::span<const std::byte> src) override {
    plan_.check(Op::atomic_write);
    ForwardingDevice::write_atomic(offset, src);
  }
  void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) override {
    plan_.check(options.may_punch ? Op::punch : Op::zero);
    ForwardingDevice::write_zeroes(offset, length, options);
  }
  void sync() override {
    plan_.check(Op::sync);
    ForwardingDevice::sync();
  }

 private:
  FaultPlan own_;
  FaultPlan& plan_;
  bool offer_durable_ = true;
};

class FaultyJournalFile final : public JournalFile {
 public:
  FaultyJournalFile(JournalFile& inner, FaultPlan& plan) : inner_(inner), plan_(plan) {}

  uint64_t size() override { return inner_.size(); }
  size_t read(uint64_t offset, std::span<std::byte> dst) override { return inner_.read(offset, dst); }
  void write(uint64_t offset, std::span<const std::byte> src) override {
    const std::span<const std::byte> one[] = {src};
    write_gather(offset, one);
  }
  // A failed append may land in part first (a torn append), as a full disk leaves it.
  void write_gather(uint64_t offset, std::span<const std::span<const std::byte>> pieces) override;
  void truncate(uint64_t size) override {
    plan_.check(Op::journal_truncate);
    inner_.truncate(size);
  }
  void sync() override {
    plan_.check(Op::journal_sync);
    inner_.sync();
  }
  const std::string& name() const override { return inner_.name(); }

 private:
  JournalFile& inner_;
  FaultPlan& plan_;
};

}  // namespace untorn::testing
