#include "cache/extent_map.h"

#include <algorithm>
#include <bit>

#include "util/io_error.h"

namespace untorn {
namespace {

constexpr uint64_t kMinShardBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxShards = 65536;

uint64_t choose_shard_bytes(uint64_t size, uint64_t asked) {
  if (asked != 0) return asked;
  return std::max(kMinShardBytes, std::bit_ceil(std::max<uint64_t>(size / kMaxShards, 1)));
}

}  // namespace

ExtentMap::ExtentMap(BlockDevice& device, uint32_t granularity, Options options)
    : device_(device),
      size_(device.size()),
      granularity_(granularity),
      shard_bytes_(choose_shard_bytes(device.size(), options.shard_bytes)),
      // At least two shards' bitmaps: a shard that turns into one must not have to drop
      // its own knowledge to fit.
      max_bytes_(std::max({options.max_bytes, 16 * ShardAllocation::kRunBytes,
                           2 * ShardAllocation::bitmap_bytes(shard_bytes_, granularity)})),
      shard_count_(static_cast<size_t>(std::max<uint64_t>((size_ + shard_bytes_ - 1) / shard_bytes_, 1))),
      shards_(std::make_unique<Shard[]>(shard_count_)) {
  if (size_ % granularity_ != 0 || shard_bytes_ % granularity_ != 0)
    throw IoError(EINVAL, "internal: extent map granularity does not divide the device");
  for (size_t i = 0; i < shard_count_; ++i)
    shards_[i].known.place(i * shard_bytes_, std::min(size_, (i + 1) * shard_bytes_), granularity_);
}

ExtentMap::~ExtentMap() = default;

uint64_t ExtentMap::shard_end(uint64_t offset) const {
  return std::min(size_, (offset / shard_bytes_ + 1) * shard_bytes_);
}

ExtentMap::Footprint ExtentMap::footprint(const Shard& s) {
  return {s.known.memory_bytes(), s.known.runs(), s.known.is_bitmap() ? 1u : 0u};
}

void ExtentMap::assign_locked(Shard& s, uint64_t begin, uint64_t end,
                              std::optional<Allocation> state) noexcept {
  const Footprint before = footprint(s);
  try {
    s.known.assign(begin, end, state);
  } catch (...) {  // std::bad_alloc: the shard may be half updated; unknown is always right
    s.known.clear();
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
  account(s, before);
}

void ExtentMap::drop_locked(Shard& victim) noexcept {
  const Footprint f = footprint(victim);
  victim.known.clear();
  bytes_.fetch_sub(f.bytes);
  runs_.fetch_sub(f.runs, std::memory_order_relaxed);
  bitmaps_.fetch_sub(f.bitmaps, std::memory_order_relaxed);
  dropped_.fetch_add(1, std::memory_order_relaxed);
}

void ExtentMap::account(Shard& s, Footprint before) noexcept {
  const Footprint after = footprint(s);
  runs_.fetch_add(after.runs - before.runs, std::memory_order_relaxed);  // modulo 2^64
  bitmaps_.fetch_add(after.bitmaps - before.bitmaps, std::memory_order_relaxed);
  const uint64_t now = bytes_.fetch_add(after.bytes - before.bytes) + (after.bytes - before.bytes);
  if (after.bytes <= before.bytes || now <= max_bytes_) return;
  // Over the bound: forget a whole other shard (cold, by round robin). The caller holds
  // s.mutex, so a victim is only taken with try_lock (no lock order between shards).
  for (size_t tries = 0; tries < shard_count_; ++tries) {
    Shard& victim = shards_[drop_hand_.fetch_add(1, std::memory_order_relaxed) % shard_count_];
    if (&victim == &s) continue;
    std::unique_lock lk(victim.mutex, std::try_to_lock);
    if (!lk.owns_lock() || victim.known.memory_bytes() == 0) continue;
    drop_locked(victim);
    if (bytes_.load() <= max_bytes_) return;
  }
  // One shard holds (nearly) all of it: forget that one too, what was just stored
  // included (asked again, it is probed again).
  if (s.known.memory_bytes() > max_bytes_ / 2) drop_locked(s);
}

ExtentMap::Mapping ExtentMap::mapping_of(uint64_t offset, uint64_t limit, uint64_t entry_end,
                                         Allocation state, uint64_t cookie) const {
  const uint64_t end = std::min({limit, entry_end, shard_end(offset)});
  return Mapping{offset, end - offset, state, cookie};
}

std::optional<ExtentMap::Mapping> ExtentMap::known_locked(Shard& s, uint64_t offset, uint64_t limit) {
  const ShardAllocation::Run run = s.known.at(offset, limit);
  if (!run.state) return std::nullopt;
  hits_.fetch_add(1, std::memory_order_relaxed);
  return mapping_of(offset, limit, run.end, *run.state, s.seq.load(std::memory_order_relaxed));
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
    unknown_end = s.known.at(offset, shard_end(offset)).end;
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
  for (size_t i = 0; i < n; ++i) assign_locked(s, runs[i].begin, runs[i].end, runs[i].state);
  return mapping_of(offset, limit, runs[0].end, runs[0].state, cookie);
}

bool ExtentMap::still_valid(const Mapping& m) const {
  return m.cookie != 0 && shard_of(m.offset).seq.load(std::memory_order_acquire) == m.cookie;
}

uint64_t ExtentMap::round_down(uint64_t v) const { return v / granularity_ * granularity_; }
uint64_t ExtentMap::round_up(uint64_t v) const { return std::min(size_, round_down(v + granularity_ - 1)); }

void ExtentMap::begin_change(uint64_t offset, uint64_t length) noexcept {
  // Every block the change touches, whole: a wider "data" is never wrong.
  for (uint64_t pos = round_down(offset), end = round_up(offset + length); pos < end;) {
    const uint64_t to = std::min(end, shard_end(pos));
    Shard& s = shard_of(pos);
    std::lock_guard lk(s.mutex);
    bump(s);
    ++s.changing;
    // Data while the change runs: the one answer that is never wrong (E1).
    const ShardAllocation::Run run = s.known.at(pos, to);
    if (!(run.state == Allocation::data && run.end >= to)) assign_locked(s, pos, to, Allocation::data);
    pos = to;
  }
}

void ExtentMap::end_change(uint64_t offset, uint64_t length, std::optional<Allocation> result) noexcept {
  // The blocks begin_change marked; the result goes to those the change covered whole. A
  // block covered in part stays data: a hole or zero there could call data zero (E1).
  const uint64_t whole_begin = round_up(offset);
  const uint64_t whole_end = std::max(whole_begin, round_down(offset + length));
  for (uint64_t pos = round_down(offset), end = round_up(offset + length); pos < end;) {
    const uint64_t to = std::min(end, shard_end(pos));
    Shard& s = shard_of(pos);
    std::lock_guard lk(s.mutex);
    const uint64_t rb = std::clamp(whole_begin, pos, to), re = std::clamp(whole_end, rb, to);
    if (!result) {
      assign_locked(s, pos, to, std::nullopt);
    } else {
      assign_locked(s, pos, rb, Allocation::data);
      if (rb < re) {
        const ShardAllocation::Run run = s.known.at(rb, re);
        if (!(run.state == *result && run.end >= re)) assign_locked(s, rb, re, *result);
      }
      assign_locked(s, re, to, Allocation::data);
    }
    --s.changing;
    bump(s);
    pos = to;
  }
}

ExtentMap::Stats ExtentMap::stats() const {
  Stats st;
  st.entries = runs_.load(std::memory_order_relaxed);
  st.bitmaps = bitmaps_.load(std::memory_order_relaxed);
  st.memory_bytes = bytes_.load(std::memory_order_relaxed) + shard_count_ * sizeof(Shard);
  st.probes = probes_.load(std::memory_order_relaxed);
  st.hits = hits_.load(std::memory_order_relaxed);
  st.stale_probes = stale_probes_.load(std::memory_order_relaxed);
  st.dropped_shards = dropped_.load(std::memory_order_relaxed);
  return st;
}

}  // namespace untorn
