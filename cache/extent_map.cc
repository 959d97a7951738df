#include "cache/extent_map.h"

#include <algorithm>
#include <bit>

#include "util/io_error.h"

namespace untorn {
namespace {

constexpr uint64_t kMinShardBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxShards = 65536;
// A std::map node with its key and Entry, as the allocator sees it.
constexpr uint64_t kEntryBytes = 64;

uint64_t choose_shard_bytes(uint64_t size, uint64_t asked) {
  if (asked != 0) return asked;
  return std::max(kMinShardBytes, std::bit_ceil(std::max<uint64_t>(size / kMaxShards, 1)));
}

}  // namespace

const char* to_string(Allocation a) {
  switch (a) {
    case Allocation::data: return "data";
    case Allocation::hole: return "hole";
    case Allocation::zero: return "zero";
  }
  return "?";
}

ExtentMap::ExtentMap(BlockDevice& device, uint32_t granularity, Options options)
    : device_(device),
      size_(device.size()),
      granularity_(granularity),
      shard_bytes_(choose_shard_bytes(device.size(), options.shard_bytes)),
      max_entries_(std::max<uint64_t>(options.max_entries, 16)),
      shard_count_(static_cast<size_t>(std::max<uint64_t>((size_ + shard_bytes_ - 1) / shard_bytes_, 1))),
      shards_(std::make_unique<Shard[]>(shard_count_)) {
  if (size_ % granularity_ != 0 || shard_bytes_ % granularity_ != 0)
    throw IoError(EINVAL, "internal: extent map granularity does not divide the device");
}

ExtentMap::~ExtentMap() = default;

uint64_t ExtentMap::shard_end(uint64_t offset) const {
  return std::min(size_, (offset / shard_bytes_ + 1) * shard_bytes_);
}

std::map<uint64_t, ExtentMap::Entry>::iterator ExtentMap::find_locked(Shard& s, uint64_t offset) {
  auto it = s.entries.upper_bound(offset);
  if (it == s.entries.begin()) return s.entries.end();
  --it;
  return it->second.end > offset ? it : s.entries.end();
}

int64_t ExtentMap::assign_locked(Shard& s, uint64_t begin, uint64_t end,
                                 std::optional<Allocation> state) {
  if (begin >= end) return 0;
  int64_t delta = 0;
  // Cut the entries overlapping [begin, end) back to what lies outside it.
  auto it = s.entries.upper_bound(begin);
  if (it != s.entries.begin()) {
    auto prev = std::prev(it);
    if (prev->second.end > begin) {
      const Entry old = prev->second;
      prev->second.end = begin;
      if (old.end > end) {
        s.entries.emplace(end, Entry{old.end, old.state});
        ++delta;
      }
      if (prev->first == begin) {  // nothing of it left before begin
        s.entries.erase(prev);
        --delta;
      }
    }
  }
  it = s.entries.lower_bound(begin);
  while (it != s.entries.end() && it->first < end) {
    if (it->second.end > end) {
      const Entry rest = it->second;
      s.entries.erase(it);
      s.entries.emplace(end, rest);
      break;
    }
    it = s.entries.erase(it);
    --delta;
  }
  if (!state) return delta;
  // Insert, merged with touching neighbours of the same state.
  uint64_t b = begin, e = end;
  auto next = s.entries.lower_bound(end);
  if (next != s.entries.end() && next->first == end && next->second.state == *state) {
    e = next->second.end;
    s.entries.erase(next);
    --delta;
  }
  auto after = s.entries.lower_bound(begin);
  if (after != s.entries.begin()) {
    auto prev = std::prev(after);
    if (prev->second.end == begin && prev->second.state == *state) {
      prev->second.end = e;
      return delta;
    }
  }
  s.entries.emplace(b, Entry{e, *state});
  return delta + 1;
}

void ExtentMap::account(Shard& s, int64_t entry_delta) {
  if (entry_delta == 0) return;
  const uint64_t now = entries_.fetch_add(static_cast<uint64_t>(entry_delta)) +
                       static_cast<uint64_t>(entry_delta);
  if (entry_delta < 0 || now <= max_entries_) return;
  // Over the bound: forget a whole other shard (cold, by round robin). The caller holds
  // s.mutex, so a victim is only taken with try_lock (no lock order between shards).
  for (size_t tries = 0; tries < shard_count_; ++tries) {
    Shard& victim = shards_[drop_hand_.fetch_add(1, std::memory_order_relaxed) % shard_count_];
    if (&victim == &s) continue;
    std::unique_lock lk(victim.mutex, std::try_to_lock);
    if (!lk.owns_lock() || victim.entries.empty()) continue;
    const uint64_t n = victim.entries.size();
    victim.entries.clear();
    entries_.fetch_sub(n);
    dropped_.fetch_add(n, std::memory_order_relaxed);
    if (entries_.load() <= max_entries_) return;
  }
  // One shard holds (nearly) all of them: forget that one too, what was just stored
  // included (asked again, it is probed again).
  if (s.entries.size() > max_entries_ / 2) {
    const uint64_t n = s.entries.size();
    s.entries.clear();
    entries_.fetch_sub(n);
    dropped_.fetch_add(n, std::memory_order_relaxed);
  }
}

ExtentMap::Mapping ExtentMap::mapping_of(uint64_t offset, uint64_t limit, uint64_t entry_end,
                                         Allocation state, uint64_t cookie) const {
  const uint64_t end = std::min({limit, entry_end, shard_end(offset)});
  return Mapping{offset, end - offset, state, cookie};
}

std::optional<ExtentMap::Mapping> ExtentMap::known_locked(Shard& s, uint64_t offset, uint64_t limit) {
  auto it = find_locked(s, offset);
  if (it == s.entries.end()) return std::nullopt;
  hits_.fetch_add(1, std::memory_order_relaxed);
  return mapping_of(offset, limit, it->second.end, it->second.state,
                    s.seq.load(std::memory_order_relaxed));
}

std::optional<ExtentMap::Mapping> ExtentMap::lookup(uint64_t offset, uint64_t limit) {
  Shard& s = shard_of(offset);
  std::lock_guard lk(s.mutex);
  return known_locked(s, offset, limit);
}

ExtentMap::Mapping ExtentMap::map(uint64_t offset, uint64_t limit) {
  if (offset % granularity_ != 0 || offset >= limit || limit > size_)
    throw IoError(EINVAL, "internal: extent map asked for an unaligned or empty range");
  Shard& s = shard_of(offset);
  uint64_t cookie, unknown_end;
  bool quiet;
  {
    std::lock_guard lk(s.mutex);
    if (auto known = known_locked(s, offset, limit)) return *known;
    auto next = s.entries.upper_bound(offset);
    unknown_end = next == s.entries.end() ? shard_end(offset) : next->first;
    cookie = s.seq.load(std::memory_order_relaxed);
    quiet = s.changing == 0;
  }
  // Probe the unknown gap [offset, unknown_end) with no lock held: once, and a second time
  // when a hole ends before what was asked (to learn the data run after it).
  const uint64_t L = granularity_;
  auto down = [L](uint64_t v) { return v / L * L; };
  auto up = [L](uint64_t v) { return (v + L - 1) / L * L; };
  struct Run {
    uint64_t begin, end;
    Allocation state;
  };
  Run runs[2];
  size_t n = 0;
  probes_.fetch_add(1, std::memory_order_relaxed);
  Extent first = device_.allocation_at(offset, unknown_end);
  uint64_t first_end = first.offset + first.length;
  if (first.data) {
    runs[n++] = {offset, std::max(up(first_end), offset + L), Allocation::data};
  } else {
    // A hole that ends inside a logical block leaves that block data (it is partly
    // allocated): never call data zero.
    const uint64_t hole_end = first_end >= unknown_end ? unknown_end : down(first_end);
    if (hole_end > offset) runs[n++] = {offset, hole_end, Allocation::hole};
    // The data run after the hole, when it is asked for (or the hole was shorter than a
    // block, so the answer at `offset` is that data).
    if (hole_end < unknown_end && (n == 0 || hole_end < limit)) {
      probes_.fetch_add(1, std::memory_order_relaxed);
      const Extent second = device_.allocation_at(first_end, unknown_end);
      // Data from hole_end (the partly allocated block included) to where the device says
      // it ends; at least one block should the file have changed under the probe.
      const uint64_t data_end = second.data ? up(second.offset + second.length) : up(first_end);
      runs[n++] = {hole_end, std::max(data_end, hole_end + L), Allocation::data};
    }
  }
  for (size_t i = 0; i < n; ++i) runs[i].end = std::min(runs[i].end, unknown_end);
  std::lock_guard lk(s.mutex);
  // Race closed here: a change that began while the probe ran (or was running when it
  // started) may not be in its answer. Such an answer is not stored, and handed out with
  // cookie 0 so the caller re-maps (test: ExtentMapTest.ProbeRacingAChangeIsNeverStored).
  const bool fresh = quiet && s.seq.load(std::memory_order_relaxed) == cookie;
  if (!fresh) {
    stale_probes_.fetch_add(1, std::memory_order_relaxed);
    return mapping_of(offset, limit, runs[0].end, runs[0].state, 0);
  }
  int64_t delta = 0;
  for (size_t i = 0; i < n; ++i) delta += assign_locked(s, runs[i].begin, runs[i].end, runs[i].state);
  account(s, delta);
  return mapping_of(offset, limit, runs[0].end, runs[0].state, cookie);
}

bool ExtentMap::still_valid(const Mapping& m) const {
  return m.cookie != 0 && shard_of(m.offset).seq.load(std::memory_order_acquire) == m.cookie;
}

void ExtentMap::begin_change(uint64_t offset, uint64_t length) {
  for (uint64_t pos = offset, end = offset + length; pos < end;) {
    const uint64_t to = std::min(end, shard_end(pos));
    Shard& s = shard_of(pos);
    std::lock_guard lk(s.mutex);
    bump(s);
    ++s.changing;
    // Data while the change runs: the one answer that is never wrong (E1).
    auto it = find_locked(s, pos);
    if (!(it != s.entries.end() && it->second.state == Allocation::data && it->second.end >= to))
      account(s, assign_locked(s, pos, to, Allocation::data));
    pos = to;
  }
}

void ExtentMap::end_change(uint64_t offset, uint64_t length, std::optional<Allocation> result,
                           uint64_t result_begin, uint64_t result_end) {
  for (uint64_t pos = offset, end = offset + length; pos < end;) {
    const uint64_t to = std::min(end, shard_end(pos));
    Shard& s = shard_of(pos);
    std::lock_guard lk(s.mutex);
    const uint64_t rb = std::clamp(result_begin, pos, to), re = std::clamp(result_end, rb, to);
    int64_t delta = 0;
    if (!result) {
      delta += assign_locked(s, pos, to, std::nullopt);
    } else {
      delta += assign_locked(s, pos, rb, Allocation::data);
      auto it = find_locked(s, rb);
      if (rb < re && !(it != s.entries.end() && it->second.state == *result && it->second.end >= re))
        delta += assign_locked(s, rb, re, *result);
      delta += assign_locked(s, re, to, Allocation::data);
    }
    account(s, delta);
    --s.changing;
    bump(s);
    pos = to;
  }
}

ExtentMap::Stats ExtentMap::stats() const {
  Stats st;
  st.entries = entries_.load(std::memory_order_relaxed);
  st.memory_bytes = st.entries * kEntryBytes + shard_count_ * sizeof(Shard);
  st.probes = probes_.load(std::memory_order_relaxed);
  st.hits = hits_.load(std::memory_order_relaxed);
  st.stale_probes = stale_probes_.load(std::memory_order_relaxed);
  st.dropped_entries = dropped_.load(std::memory_order_relaxed);
  return st;
}

}  // namespace untorn
