#include "tests/support/fault_injection.h"

namespace untorn::testing {

const char* op_name(Op op) {
  static constexpr const char* names[kOps] = {"read", "write", "atomic write", "zero", "punch", "sync",
                                              "journal write", "journal sync", "journal truncate"};
  return names[static_cast<unsigned>(op)];
}

void FaultPlan::fail_next(Ops ops, int n, int err) {
  std::lock_guard lk(mutex_);
  // A new count for the same operations replaces the old one (n = 0 cancels).
  std::erase_if(rules_, [&](const Rule& r) { return r.probability == 0 && r.ops.bits == ops.bits; });
  if (n > 0) rules_.push_back({ops, n, 0, {err}});
}

void FaultPlan::fail_randomly(Ops ops, double p, std::vector<int> errs) {
  std::lock_guard lk(mutex_);
  rules_.push_back({ops, 0, p, std::move(errs)});
}

void FaultPlan::stop() {
  std::lock_guard lk(mutex_);
  rules_.clear();
}

uint64_t FaultPlan::injected_total() const {
  uint64_t n = 0;
  for (const auto& c : injected_) n += c.load();
  return n;
}

uint64_t FaultPlan::torn_prefix(uint64_t n) {
  std::lock_guard lk(mutex_);
  return n == 0 ? 0 : rng_() % n;
}

void FaultPlan::check(Op op) {
  const unsigned i = static_cast<unsigned>(op);
  ++calls_[i];
  int err = 0;
  {
    std::lock_guard lk(mutex_);
    for (Rule& r : rules_) {
      if (!r.ops.has(op)) continue;
      if (r.probability == 0) {
        if (r.remaining > 0) {
          --r.remaining;
          err = r.errs.front();
          break;
        }
      } else if (std::uniform_real_distribution<double>(0, 1)(rng_) < r.probability) {
        err = r.errs[rng_() % r.errs.size()];
        break;
      }
    }
  }
  if (observer) observer(op, err != 0);
  if (err == 0) return;
  ++injected_[i];
  throw IoError(err, std::string("injected ") + op_name(op) + " error");
}

void FaultyJournalFile::write_gather(uint64_t offset, std::span<const std::span<const std::byte>> pieces) {
  try {
    plan_.check(Op::journal_write);
  } catch (const IoError&) {
    // Part of the append lands before the failure (a full disk, a failing sector).
    uint64_t total = 0;
    for (auto p : pieces) total += p.size();
    uint64_t left = plan_.torn_prefix(total);
    std::vector<std::span<const std::byte>> landed;
    for (auto p : pieces) {
      if (left == 0) break;
      landed.push_back(p.first(std::min<uint64_t>(left, p.size())));
      left -= landed.back().size();
    }
    if (!landed.empty()) inner_.write_gather(offset, landed);
    throw;
  }
  inner_.write_gather(offset, pieces);
}

}  // namespace untorn::testing
