#include "cache/shard_allocation.h"

#include <algorithm>
#include <bit>
#include <iterator>
#include <utility>

namespace untorn {
namespace {

constexpr uint64_t kPerWord = 32;  // granules per 64-bit word, 2 bits each
constexpr uint64_t kRepeat = 0x5555555555555555ULL;

unsigned code_of(std::optional<Allocation> s) { return s ? 1u + static_cast<unsigned>(*s) : 0u; }
std::optional<Allocation> state_of(unsigned code) {
  if (code == 0) return std::nullopt;
  return static_cast<Allocation>(code - 1);
}
// The bits of granules [lo, lo + n) of a word (n in 1..32).
uint64_t mask_of(uint64_t lo, uint64_t n) {
  return (n == kPerWord ? ~uint64_t{0} : ((uint64_t{1} << (2 * n)) - 1)) << (2 * lo);
}

}  // namespace

void ShardAllocation::place(uint64_t begin, uint64_t end, uint64_t granularity) {
  begin_ = begin;
  end_ = end;
  granularity_ = granularity;
}

uint64_t ShardAllocation::memory_bytes() const {
  return bits_ ? words_ * sizeof(uint64_t) : runs_.size() * kRunBytes;
}

void ShardAllocation::clear() noexcept {
  runs_.clear();
  bits_.reset();
  words_ = 0;
}

ShardAllocation::Run ShardAllocation::at(uint64_t offset, uint64_t limit) const {
  limit = std::min(limit, end_);
  if (!bits_) return list_at(offset, limit);
  const uint64_t g = granule(offset);
  const uint64_t g_limit = (limit - begin_ + granularity_ - 1) / granularity_;
  const unsigned code = code_at(g);
  const uint64_t g_end = scan(g + 1, g_limit, code);
  return {state_of(code), std::min(limit, begin_ + g_end * granularity_)};
}

void ShardAllocation::assign(uint64_t begin, uint64_t end, std::optional<Allocation> state) {
  if (begin >= end) return;
  if (begin == begin_ && end == end_) {  // the whole slice: one run (or none) again
    std::map<uint64_t, Entry> one;
    if (state) one.emplace(begin, Entry{end, *state});  // before anything is forgotten
    clear();
    runs_.swap(one);
    return;
  }
  if (bits_) {
    set_codes(granule(begin), granule(end), code_of(state));
    return;
  }
  list_assign(begin, end, state);
  if (runs_.size() > max_runs()) to_bitmap();
}

uint64_t ShardAllocation::bitmap_bytes(uint64_t length, uint64_t granularity) {
  return (length / granularity + kPerWord - 1) / kPerWord * sizeof(uint64_t);
}

uint64_t ShardAllocation::max_runs() const {
  return std::clamp<uint64_t>(bitmap_bytes(end_ - begin_, granularity_) / kRunBytes, 1, kMaxRuns);
}

// ---- run list ---------------------------------------------------------------------------

ShardAllocation::Run ShardAllocation::list_at(uint64_t offset, uint64_t limit) const {
  auto next = runs_.upper_bound(offset);
  if (next != runs_.begin()) {
    auto it = std::prev(next);
    if (it->second.end > offset) return {it->second.state, std::min(limit, it->second.end)};
  }
  // Unknown up to the next known run.
  return {std::nullopt, next == runs_.end() ? limit : std::min(limit, next->first)};
}

void ShardAllocation::list_assign(uint64_t begin, uint64_t end, std::optional<Allocation> state) {
  // Cut the runs overlapping [begin, end) back to what lies outside it.
  auto it = runs_.upper_bound(begin);
  if (it != runs_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.end > begin) {
      const Entry old = prev->second;
      prev->second.end = begin;
      if (old.end > end) runs_.emplace(end, Entry{old.end, old.state});
      if (prev->first == begin) runs_.erase(prev);  // nothing of it left before begin
    }
  }
  it = runs_.lower_bound(begin);
  while (it != runs_.end() && it->first < end) {
    if (it->second.end > end) {
      const Entry rest = it->second;
      runs_.erase(it);
      runs_.emplace(end, rest);
      break;
    }
    it = runs_.erase(it);
  }
  if (!state) return;
  // Insert, merged with touching neighbours of the same state.
  uint64_t e = end;
  auto next = runs_.lower_bound(end);
  if (next != runs_.end() && next->first == end && next->second.state == *state) {
    e = next->second.end;
    runs_.erase(next);
  }
  auto after = runs_.lower_bound(begin);
  if (after != runs_.begin()) {
    auto prev = std::prev(after);
    if (prev->second.end == begin && prev->second.state == *state) {
      prev->second.end = e;
      return;
    }
  }
  runs_.emplace(begin, Entry{e, *state});
}

// ---- bitmap -----------------------------------------------------------------------------

unsigned ShardAllocation::code_at(uint64_t g) const {
  return static_cast<unsigned>((bits_[g / kPerWord] >> (2 * (g % kPerWord))) & 3);
}

uint64_t ShardAllocation::scan(uint64_t g, uint64_t limit, unsigned code) const {
  const uint64_t pattern = code * kRepeat;
  while (g < limit) {
    const uint64_t lo = g % kPerWord, n = std::min(kPerWord - lo, limit - g);
    const uint64_t diff = (bits_[g / kPerWord] ^ pattern) & mask_of(lo, n);
    if (diff != 0) return g - lo + static_cast<uint64_t>(std::countr_zero(diff)) / 2;
    g += n;
  }
  return limit;
}

void ShardAllocation::set_codes(uint64_t g, uint64_t limit, unsigned code) {
  const uint64_t pattern = code * kRepeat;
  while (g < limit) {
    const uint64_t lo = g % kPerWord, n = std::min(kPerWord - lo, limit - g);
    const uint64_t mask = mask_of(lo, n);
    uint64_t& word = bits_[g / kPerWord];
    word = (word & ~mask) | (pattern & mask);
    g += n;
  }
}

void ShardAllocation::to_bitmap() {
  const uint64_t words = bitmap_bytes(end_ - begin_, granularity_) / sizeof(uint64_t);
  auto bits = std::make_unique<uint64_t[]>(words);  // zeroed: all unknown; may throw, first
  words_ = words;
  bits_ = std::move(bits);
  for (const auto& [start, run] : runs_) set_codes(granule(start), granule(run.end), code_of(run.state));
  runs_.clear();
}

}  // namespace untorn
