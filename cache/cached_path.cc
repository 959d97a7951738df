#include "cache/cached_path.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "cache/honest_extents.h"
#include "cache/request_range.h"
#include "device/aligned_buffer.h"
#include "util/io_error.h"

// Test hooks at the revalidation points (cache/race_hooks.h); nothing in the plugin.
#ifdef UNTORN_TEST_HOOKS
#define RACE_HOOK(name) \
  do {                  \
    if (hooks_.name) hooks_.name(); \
  } while (0)
#define RACE_CHECK_SKIPPED(name) (hooks_.name)
#else
#define RACE_HOOK(name) \
  do {                  \
  } while (0)
#define RACE_CHECK_SKIPPED(name) false
#endif

namespace untorn {
namespace {

// Read rounds that may stop to probe the allocation before reading the rest blind.
constexpr int kMaxProbeRounds = 4;
// Block status: attempts from the map before asking the device directly, and the most
// mappings one reply is built from (a reply may cover less than asked).
constexpr int kMaxStatusAttempts = 8;
constexpr size_t kMaxStatusMappings = 1024;
// Empty regions' block tables (4 KiB each at the defaults) kept before make_room frees them.
constexpr size_t kReclaimRegionsAt = 32;

WritebackOptions writeback_options(const Config::Cache& c, uint32_t A) {
  WritebackOptions o;
  o.atomic_write_unit_max = A;
  o.background_bytes = c.size / 100 * c.dirty_background_ratio;
  o.dirty_limit = std::max<uint64_t>(c.size / 100 * c.dirty_ratio, c.folio_max);
  o.expire = c.dirty_expire;
  o.batch_bytes = std::clamp<uint64_t>(c.size / 16, c.folio_max, uint64_t{16} << 20);
  return o;
}

}  // namespace

CachedPath::CachedPath(MappedDevice& device, ExtentMap& map, AtomicWriter& writer,
                       const Config::Cache& config, uint32_t logical_block_size,
                       uint32_t atomic_write_unit_max)
    : device_(device),
      map_(map),
      writer_(writer),
      mode_(config.mode),
      populate_on_read_(config.populate_on_read),
      logical_block_size_(logical_block_size),
      atomic_write_unit_max_(atomic_write_unit_max),
      block_(std::max(logical_block_size, device.io_align())),
      readahead_max_(std::min<uint64_t>(config.folio_max, config.size / 16)),
      cache_(device.size(), block_, config.folio_max, config.size, stats_, locks_),
      writeback_(cache_, locks_, writer, stats_, writeback_options(config, atomic_write_unit_max)) {
  // A write that bypassed the MappedDevice would leave the map calling its data a hole.
  if (&writer.device() != &device)
    throw IoError(EINVAL, "internal: the atomic writer must write through the cache's MappedDevice");
#ifdef UNTORN_TEST_HOOKS
  writeback_.set_race_hooks(&hooks_);
#endif
}

CachedPath::~CachedPath() { writeback_.stop(); }

void CachedPath::start_background() { writeback_.start(); }

void CachedPath::shutdown() {
  writeback_.stop();
  flush();
}

CacheCounters CachedPath::counters() const {
  CacheCounters c = stats_.snapshot();
  c.dirty_bytes = writeback_.dirty_bytes();
  c.cached_bytes = cache_.used();
  c.folios = cache_.folio_count();
  const ExtentMap::Stats m = map_.stats();
  c.extent_entries = m.entries;
  c.extent_bitmaps = m.bitmaps;
  c.extent_bytes = m.memory_bytes;
  c.extent_probes = m.probes;
  return c;
}

void CachedPath::make_room(uint64_t bytes) {
  // Tables of regions whose folios are all gone (uncached writes, trims) go back here,
  // where no range is held, a few dozen at a time.
  if (cache_.empty_regions() >= kReclaimRegionsAt) cache_.reclaim_empty_regions();
  if (cache_.used() + bytes <= cache_.budget()) return;
  stats_.add(stats_.memory_waits);
  for (;;) {
    if (cache_.evict_to_fit(bytes)) return;
    // Nothing clean to evict and nothing to write back: what is left is in use by
    // requests in flight. Go over budget by this request rather than wait for them.
    if (!writeback_.help_or_wait()) return;
  }
}

// ---- reads ----------------------------------------------------------------------------

uint64_t CachedPath::readahead_end(uint64_t offset, uint64_t length) {
  const uint64_t end = offset + length;
  bool sequential = false;
  for (auto& slot : stream_ends_) {
    uint64_t expected = offset;
    if (offset != 0 && slot.compare_exchange_strong(expected, end)) {
      sequential = true;
      break;
    }
  }
  if (!sequential) {
    stream_ends_[stream_slot_.fetch_add(1, std::memory_order_relaxed) % stream_ends_.size()] = end;
    return align_up(end);
  }
  const uint64_t window = std::min<uint64_t>(readahead_max_, std::max<uint64_t>(4 * length, 128 * 1024));
  return std::min(size(), align_up(end + window));
}

std::optional<ExtentMap::Mapping> CachedPath::mapping_at(uint64_t pos, uint64_t limit,
                                                         ReadMappings& mappings) {
  auto& probed = mappings.probed;
  for (auto it = probed.begin(); it != probed.end(); ++it) {
    if (pos < it->offset || pos >= it->end()) continue;
    // Revalidation point (1). This mapping was probed before the read took its range
    // lock (the probe runs with no lock held). In between, a write of these blocks, its
    // writeback and the eviction of its folio may have turned the hole into data:
    // zero-filling from the old mapping would return zeroes for that data, and cache
    // them. Valid still means no change began in its shard since the probe.
    // Test: ExtentRaceTest.ReadMissRevalidatesAMappingProbedBeforeTheLock.
    if (RACE_CHECK_SKIPPED(skip_read_revalidation) || map_.still_valid(*it))
      return ExtentMap::Mapping{pos, it->end() - pos, it->state, it->cookie};
    stats_.add(stats_.stale_mappings);
    probed.erase(it);
    break;
  }
  // Under the shared range lock the allocation of a block missing from the cache cannot
  // change: every request that changes the device range holds it exclusive, and
  // writeback only writes blocks that are dirty in the cache, which a missing block is
  // not. What the map knows now is current.
  return map_.lookup(pos, limit);
}

CachedPath::Run CachedPath::run_of(uint64_t pos, uint64_t limit, const ExtentMap::Mapping& m) const {
  // Zero-fill whole cache blocks only; data may round outwards (the safe direction).
  if (m.state != Allocation::data) {
    const uint64_t to = std::min(limit, align_down(m.end()));
    if (to > pos) return {to, true};
  }
  return {std::min(limit, align_up(m.end())), false};
}

uint64_t CachedPath::load(uint64_t s, uint64_t t, std::byte* into, ReadMappings& mappings) {
  for (uint64_t pos = s; pos < t;) {
    Run run{t, false};
    if (mappings.use_map) {
      auto m = mapping_at(pos, t, mappings);
      if (!m) return pos;
      run = run_of(pos, t, *m);
    }
    if (run.zeroes) {
      std::memset(into + (pos - s), 0, run.to - pos);
      stats_.add(stats_.hole_fill_bytes, run.to - pos);
    } else {
      device_.read(pos, {into + (pos - s), run.to - pos});
    }
    pos = run.to;
  }
  return kFilled;
}

uint64_t CachedPath::fill(uint64_t b0, uint64_t b1, uint64_t offset, std::span<std::byte> dst,
                          bool populate, ReadMappings& mappings, bool* missed) {
  const uint64_t end = offset + dst.size();
  auto copy_out = [&](const std::byte* src_at, uint64_t from, uint64_t to) {
    const uint64_t s = std::max(from, offset), t = std::min(to, end);
    if (s < t) std::memcpy(dst.data() + (s - offset), src_at + (s - from), t - s);
  };
  for (uint64_t pos = b0; pos < b1;) {
    // Under our shared hold of [b0, b1) a folio found there stays indexed (folio_cache.h).
    Folio* f = cache_.find_held(pos);
    RACE_HOOK(after_hit_lookup);
    FolioCache::Ref created_folio;
    if (!f && populate && mappings.use_map) {
      // Nothing cached here: a hole or zeroes (by the map) go to the client as zeroes and
      // take no cache memory; anything else is read into a new folio.
      // The mapping only up to the next folio: a folio beyond pos may hold dirty data
      // over what the map calls a hole (writeback may write it under our shared lock,
      // but eviction cannot take it while we hold its range), and that data must stay
      // out of the zero-fill (test:
      // ExtentOrderTest.AFolioInARangeAReadHoldsIsNeverEvictedNorZeroFilled).
      const uint64_t gap_end = cache_.next_folio(pos, b1);
      auto m = mapping_at(pos, gap_end, mappings);
      if (!m) return pos;
      RACE_HOOK(after_read_hole_map);
      const Run run = run_of(pos, gap_end, *m);
      if (run.zeroes) {
        const uint64_t to = run.to;
        const uint64_t zs = std::max(pos, offset), zt = std::min(to, end);
        if (zs < zt) std::memset(dst.data() + (zs - offset), 0, zt - zs);
        stats_.add(stats_.hole_fill_bytes, to - pos);
        pos = to;
        continue;
      }
    }
    if (!f && populate) {
      bool created;
      created_folio = cache_.find_or_create(pos, b0, b1, &created);
      f = created_folio.get();
    }
    if (!f) {
      // Not cached and not to be: straight from the device.
      const uint64_t gap_end = cache_.next_folio(pos, b1);
      *missed |= pos < end;
      uint64_t stop;
      if (pos >= offset && gap_end <= end) {
        stop = load(pos, gap_end, dst.data() + (pos - offset), mappings);
      } else {
        AlignedBuffer buffer(gap_end - pos, AlignedBuffer::Uninitialized{});
        stop = load(pos, gap_end, buffer.data(), mappings);
        copy_out(buffer.data(), pos, stop == kFilled ? gap_end : stop);
      }
      if (stop != kFilled) return stop;
      pos = gap_end;
      continue;
    }
    const uint64_t to = std::min(b1, f->end());
    const size_t fb = f->block_of(pos), fe = f->block_of(to - 1) + 1;
    // A hit takes no lock: blocks read as uptodate keep their bytes while we hold them.
    if (!f->uptodate_unlocked(fb, fe)) {
      std::lock_guard fl(f->mutex());
      // Load every run of blocks that is not uptodate into the folio.
      for (size_t i = fb; i < fe;) {
        size_t j = i;
        while (j < fe && !f->test(Folio::uptodate, j)) ++j;
        if (j == i) {
          ++i;
          continue;
        }
        *missed |= f->block_offset(i) < end;  // read-ahead beyond the request is no miss
        const uint64_t stop = load(f->block_offset(i), f->block_offset(j), f->block_data(i), mappings);
        const size_t loaded = stop == kFilled ? j : f->block_of(stop);
        f->set(Folio::uptodate, i, loaded, true);
        if (stop != kFilled) return stop;
        i = j;
      }
    }
    copy_out(f->block_data(fb), pos, to);
    pos = to;
  }
  return kFilled;
}

bool CachedPath::fill_with_probes(uint64_t b0, uint64_t b1, uint64_t offset,
                                  std::span<std::byte> dst, bool populate) {
  ReadMappings mappings;
  bool missed = false;
  for (int round = 0;; ++round) {
    mappings.use_map = round < kMaxProbeRounds;
    uint64_t stop;
    {
      // A1: shared against every write's exclusive hold.
      auto guard = locks_.lock(b0, b1 - b0, RangeLock::Mode::shared);
      stop = fill(b0, b1, offset, dst, populate, mappings, &missed);
    }
    if (stop == kFilled) return missed;
    // The allocation there is not known: probe it with no lock held (an lseek can wait
    // for the filesystem), then fill again under the lock, revalidating the mapping.
    mappings.probed.push_back(map_.map(stop, b1));
    RACE_HOOK(after_read_map);
  }
}

void CachedPath::read(uint64_t offset, std::span<std::byte> dst) {
  check_request_range(size(), offset, dst.size(), EINVAL, "read");
  if (dst.empty()) return;
  const bool populate = populate_on_read_ && mode_ != CacheMode::uncached;
  const uint64_t b0 = align_down(offset);
  const uint64_t b1 = align_up(offset + dst.size());
  const uint64_t ra_end = populate ? std::max(b1, readahead_end(offset, dst.size())) : b1;
  if (populate) make_room(ra_end - b0);
  const bool missed = fill_with_probes(b0, ra_end, offset, dst, populate);
  stats_.add(missed ? stats_.read_misses : stats_.read_hits);
  if (ra_end > b1) stats_.add(stats_.readahead_bytes, ra_end - b1);
}

void CachedPath::prefetch(uint64_t offset, uint64_t length) {
  check_request_range(size(), offset, length, EINVAL, "cache");
  if (length == 0 || mode_ == CacheMode::uncached) return;
  // More than half the cache would only push out what was prefetched first.
  const uint64_t end = align_up(offset + std::min(length, cache_.budget() / 2));
  const uint64_t chunk = cache_.folio_max();
  for (uint64_t pos = align_down(offset); pos < end;) {
    const uint64_t to = std::min(end, (pos / chunk + 1) * chunk);
    make_room(to - pos);
    fill_with_probes(pos, to, pos, {}, true);
    stats_.add(stats_.prefetch_bytes, to - pos);
    pos = to;
  }
}

// ---- writes ---------------------------------------------------------------------------

bool CachedPath::crosses(uint64_t boundary, Folio* holder) {
  // A group sticks out over `boundary` when the block at it is joined to the one before
  // and is dirty or under writeback.
  if (boundary == 0 || boundary >= size()) return false;
  FolioCache::Ref ref;  // only where the caller may not hold the block at `boundary`
  Folio* f = holder && boundary < holder->end() ? holder : nullptr;
  if (!f) {
    ref = cache_.find(boundary, false);
    f = ref.get();
  }
  if (!f) return false;
  std::lock_guard fl(f->mutex());
  const size_t i = f->block_of(boundary);
  return f->test(Folio::joined, i) && (f->test(Folio::dirty, i) || f->test(Folio::writeback, i));
}

CachedPath::Crossing CachedPath::crossing(uint64_t b0, uint64_t b1) {
  // The caller holds b0's block and b1 - block_'s; b1's only when one folio has both.
  Folio* first = b0 < size() ? cache_.find_held(b0, false) : nullptr;
  Folio* last = cache_.find_held(b1 - block_, false);
  return {crosses(b0, first), crosses(b1, last)};
}

void CachedPath::settle_edges(uint64_t b0, uint64_t b1, Crossing c) {
  // A group crossing b0 holds the block before it; one crossing b1 the block before b1.
  if (c.start) writeback_.write_range(b0 - block_, b0, false);
  if (c.end) writeback_.write_range(b1 - block_, b1, false);
}

RangeLock::Guard CachedPath::lock_for_write(uint64_t b0, uint64_t b1) {
  // Whether a group sticks out is known only under the lock: the block range is locked
  // first, and again wider (at most once more) when one does.
  for (bool wide = false;; wide = true) {
    const uint64_t lo = wide ? widen_lo(b0) : b0, hi = wide ? widen_hi(b1) : b1;
    auto guard = locks_.lock(lo, hi - lo, RangeLock::Mode::exclusive);
    // Older writeback of these blocks lands first and their bytes stay put while it runs.
    // Wide, of the whole locked range: a group crossing an edge may be under writeback
    // still in its blocks outside [b0, b1), and a failed one turns dirty again piece by
    // piece; settled half way, it would be skipped as not whole and then split by this
    // write's copy (A2). Test: WriteRaceTest.AWriteNeverSplitsAGroupWhoseWritebackFailedHalfReset.
    const bool whole_range = wide && !RACE_CHECK_SKIPPED(skip_wide_wait);
    writeback_.wait_idle(whole_range ? lo : b0, whole_range ? hi : b1);
    const Crossing c = crossing(b0, b1);
    if (!c.any()) return guard;
    if (!wide) continue;
    settle_edges(b0, b1, c);
    return guard;
  }
}

std::vector<FolioCache::Ref> CachedPath::copy_in(uint64_t offset, uint64_t length,
                                                 const std::byte* src, bool atomic) {
  const uint64_t b0 = align_down(offset), b1 = align_up(offset + length);
  const uint64_t end = offset + length;
  std::vector<FolioCache::Ref> created_folios;
  for (uint64_t pos = b0; pos < b1;) {
    // Under our exclusive hold a folio found there stays indexed (folio_cache.h).
    Folio* f = cache_.find_held(pos);
    if (!f) {
      bool created;
      FolioCache::Ref made = cache_.find_or_create(pos, b0, b1, &created);
      f = made.get();
      if (created) created_folios.push_back(std::move(made));
    }
    const uint64_t to = std::min(b1, f->end());
    const size_t fb = f->block_of(pos), fe = f->block_of(to - 1) + 1;
    const uint64_t s = std::max(offset, pos), t = std::min(end, to);
    // Edge blocks the request covers only in part must be uptodate first.
    if (s != pos || t != to) {
      std::lock_guard fl(f->mutex());
      for (size_t i : {fb, fe - 1}) {
        if (f->test(Folio::uptodate, i)) continue;
        device_.read(f->block_offset(i), {f->block_data(i), block_});
        f->set(Folio::uptodate, i, i + 1, true);
      }
    }
    std::byte* at = f->block_data(fb) + (s - pos);
    if (src) std::memcpy(at, src + (s - offset), t - s);
    else std::memset(at, 0, t - s);
    bool became_dirty;
    int64_t newly_dirty = 0;
    {
      std::lock_guard fl(f->mutex());
      became_dirty = f->dirty_blocks() == 0;
      newly_dirty = static_cast<int64_t>((fe - fb) - f->count(Folio::dirty, fb, fe));
      f->set(Folio::uptodate, fb, fe, true);
      f->set(Folio::dirty, fb, fe, true);
      f->set(Folio::atomic, fb, fe, atomic);
      // One group: every block but the write's first is joined to the one before.
      f->set(Folio::joined, fb, fe, atomic);
      if (pos == b0) f->set(Folio::joined, fb, fb + 1, false);
      if (became_dirty) f->dirtied_at = std::chrono::steady_clock::now();
    }
    // Always (not only when the folio turned dirty here): another writer that dirtied it
    // first may not have listed it yet, and this write may be flushed before it does.
    cache_.mark_dirty(*f);
    // Counted folio by folio: should a later folio's edge read throw, the blocks dirtied
    // so far are counted all the same (block status skips the cache when the count is 0;
    // test: CachedPathTest.AFailedWriteCountsTheBlocksItDirtied).
    writeback_.add_dirty(newly_dirty * static_cast<int64_t>(block_));
    pos = to;
  }
  // The block after the write starts a group of its own (any group it was joined to
  // was settled before the copy).
  return created_folios;
}

void CachedPath::invalidate(uint64_t b0, uint64_t b1, const RangeLock::Guard& held) noexcept {
  // It runs where memory may have run out (a write-through whose collect failed): the
  // folios are walked one at a time, with no list to allocate, and dropping one is best
  // effort (left in the cache, its blocks are not uptodate and are read again).
  int64_t dropped = 0;
  cache_.for_each_folio(b0, b1, [&](FolioCache::Ref& f) {
    const size_t fb = f->block_of(std::max(b0, f->offset()));
    const size_t fe = f->block_of(std::min(b1, f->end()) - 1) + 1;
    {
      std::lock_guard fl(f->mutex());
      dropped += static_cast<int64_t>(f->count(Folio::dirty, fb, fe));
      for (Folio::Bit bit : {Folio::uptodate, Folio::dirty, Folio::joined, Folio::atomic})
        f->set(bit, fb, fe, false);
    }
    cache_.mark_clean(*f);
    if (f->offset() >= b0 && f->end() <= b1) {
      try {
        cache_.drop_if_clean(f, held);
      } catch (...) {
      }
    }
    return true;
  });
  writeback_.add_dirty(-dropped * static_cast<int64_t>(block_));
}

bool CachedPath::write_direct(uint64_t offset, uint64_t length, const std::byte* src, bool fua,
                              bool atomic) {
  const uint64_t b0 = align_down(offset), b1 = align_up(offset + length);
  if (mode_ != CacheMode::uncached || !src || offset != b0 || offset + length != b1 ||
      cache_.find(b0, false) || cache_.next_folio(b0, b1) != b1)
    return false;
  // Uncached, whole blocks, no folio holding b0 nor starting in (b0, b1) (asked without
  // building the list of overlapping folios): no folio to fill and drop again. The
  // request goes straight to the writer as one write, crash-atomic when eligible.
  writer_.write(offset, {src, length}, atomic, fua);
  stats_.add(stats_.direct_writes);
  return true;
}

void CachedPath::write_locked(uint64_t offset, uint64_t length, const std::byte* src, bool fua,
                              const RangeLock::Guard& held) {
  const uint64_t b0 = align_down(offset), b1 = align_up(offset + length);
  const bool atomic = atomic_eligible(offset, length, logical_block_size_, atomic_write_unit_max_);
  if (write_direct(offset, length, src, fua, atomic)) return;
  std::vector<FolioCache::Ref> created = copy_in(offset, length, src, atomic);  // act
  finish_write(b0, b1, fua, created, held);                                     // finish
}

void CachedPath::finish_write(uint64_t b0, uint64_t b1, bool fua, std::vector<FolioCache::Ref>& created,
                              const RangeLock::Guard& held) {
  if (mode_ == CacheMode::writeback && !fua) return;
  try {
    writeback_.write_range(b0, b1, fua || mode_ == CacheMode::writethrough,
                           /*dropped=*/mode_ != CacheMode::writeback);
  } catch (...) {  // IoError, or no memory to collect the range's groups
    // Writethrough: the range is read again from the device next time (nothing stays
    // dirty in a cache that promised to hold none). Writeback with FUA: the data stays
    // dirty (R1) and the request fails.
    if (mode_ != CacheMode::writeback) invalidate(b0, b1, held);
    throw;
  }
  if (mode_ == CacheMode::uncached)
    for (FolioCache::Ref& f : created) cache_.drop_if_clean(f, held);
}

void CachedPath::write_request(uint64_t offset, uint64_t length, const std::byte* src, bool fua) {
  stats_.add(stats_.write_requests);
  // After a failed device sync nothing more is accepted, not even into the cache: it
  // could never be written back durably (AtomicWriter, "fsyncgate").
  writer_.throw_if_failed();
  const uint64_t b0 = align_down(offset), b1 = align_up(offset + length);
  if (mode_ == CacheMode::writeback) writeback_.throttle();
  make_room(b1 - b0);
  auto guard = lock_for_write(b0, b1);  // find
  write_locked(offset, length, src, fua, guard);  // act, finish
}

void CachedPath::write(uint64_t offset, std::span<const std::byte> src, bool fua) {
  check_request_range(size(), offset, src.size(), ENOSPC, "write");
  if (src.empty()) return;
  write_request(offset, src.size(), src.data(), fua);
}

// ---- zeroes and trims -----------------------------------------------------------------

void CachedPath::zero(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) {
  check_request_range(size(), offset, length, ENOSPC, "zero");
  if (length == 0) return;
  if (options.fast_only) {
    // NBD_CMD_FLAG_FAST_ZERO: fail at once, before anything changes, where zeroing would
    // mean writing: a block covered in part is read, modified and written.
    if (offset % block_ != 0 || (offset + length) % block_ != 0)
      throw IoError(ENOTSUP, "fast zero unsupported: the range does not cover whole blocks of " +
                                 std::to_string(block_) + " bytes, which would have to be written");
    zero_range(offset, length, options, fua);  // already zero, or deallocated by the device
    return;
  }
  // An eligible zero is one crash-atomic group like any eligible write: cache it.
  if (atomic_eligible(offset, length, logical_block_size_, atomic_write_unit_max_)) {
    write_request(offset, length, nullptr, fua);
    return;
  }
  zero_range(offset, length, options, fua);
}

void CachedPath::trim(uint64_t offset, uint64_t length, bool fua) {
  check_request_range(size(), offset, length, EINVAL, "trim");
  if (length == 0) return;
  zero_range(offset, length, ZeroOptions{.may_punch = true, .fast_only = false}, fua);
}

bool CachedPath::already_zero(const std::vector<ExtentMap::Mapping>& mappings, uint64_t b,
                              uint64_t e, ZeroOptions options) const {
  // Skipped only where the range already is what the zero would make it: holes for a
  // trim or a zero that may punch (a trim over allocated zeroes still frees the space),
  // allocated zeroes for one the client wants left allocated (NBD_CMD_FLAG_NO_HOLE).
  const Allocation wanted = options.may_punch ? Allocation::hole : Allocation::zero;
  uint64_t pos = b;
  for (const ExtentMap::Mapping& m : mappings) {
    if (m.offset != pos || m.state != wanted) return false;
    pos = m.end();
  }
  return pos >= e;
}

void CachedPath::zero_range(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) {
  const uint64_t end = offset + length;
  const uint64_t mid_b = align_up(offset), mid_e = align_down(end);
  if (mid_b >= mid_e) {  // within blocks: a cached write of zeroes
    write_request(offset, length, nullptr, fua);
    return;
  }
  writer_.throw_if_failed();
  const uint64_t b0 = align_down(offset), b1 = align_up(end);
  if (mode_ == CacheMode::writeback && (b0 != mid_b || b1 != mid_e)) writeback_.throttle();
  make_room(2 * uint64_t{block_});
  // Map the middle before locking (probes may lseek; no lock is held across them).
  std::vector<ExtentMap::Mapping> mapped = map_walk(mid_b, mid_e, false, 16);
  RACE_HOOK(after_zero_map);
  auto guard = locks_.lock(widen_lo(b0), widen_hi(b1) - widen_lo(b0), RangeLock::Mode::exclusive);
  // (4) T1: a zero or trim after a write must not be overtaken by that write's writeback
  // still in flight (it would land after the zero and bring the data back). Waiting for
  // writeback of the range to finish closes it; the folios' dirty bits are dropped below,
  // so nothing older is written later. Test: ExtentRaceTest.TrimNeverLosesToAWritebackInFlight.
  // The whole locked range, as lock_for_write's wide pass does: the groups settled below
  // reach past [b0, b1), and one half turned dirty again by a failed writeback would be
  // skipped as not whole, then cut by the zero (its tail stranded, never written: D1).
  // Test: WriteRaceTest.ATrimNeverStrandsAGroupWhoseWritebackFailedHalfReset.
  if (!RACE_CHECK_SKIPPED(skip_wait_for_writeback))
    writeback_.wait_idle(RACE_CHECK_SKIPPED(skip_wide_wait) ? b0 : widen_lo(b0),
                         RACE_CHECK_SKIPPED(skip_wide_wait) ? b1 : widen_hi(b1));
  // Every group crossing an edge the zero cuts (of the zeroed middle, and of the partial
  // blocks around it, cached writes of zeroes below) is written back whole first; the lock
  // is wide enough for all of them, and nothing starts under it.
  settle_edges(mid_b, mid_e, crossing(mid_b, mid_e));
  if (b0 != mid_b || b1 != mid_e) settle_edges(b0, b1, crossing(b0, b1));
  // D2 with FUA, D3 in writethrough: the zeroed middle is durable on its own (an edge
  // journaled below would not sync the device for it).
  const bool durable = fua || mode_ == CacheMode::writethrough;
  // Revalidation point (3). The mapping was taken before the exclusive lock; in between,
  // a write of the range and its writeback (and eviction) may have put data where it said
  // hole or zero, and skipping the zero would leave that data (T1). Revalidated now; if
  // stale, mapped again: under this lock, with writeback of the range finished, nothing
  // changes the range's allocation. Test: ExtentRaceTest.ZeroRevalidatesAMappingTakenBeforeTheLock.
  bool valid = true;
  for (const ExtentMap::Mapping& m : mapped) valid &= map_.still_valid(m);
  if (!valid && !RACE_CHECK_SKIPPED(skip_zero_revalidation)) {
    stats_.add(stats_.stale_mappings);
    mapped = map_walk(mid_b, mid_e, false, 16);
  }
  // Journal records of this range would be replayed over a skipped zero: only skip
  // without any.
  if (already_zero(mapped, mid_b, mid_e, options) && !writer_.overlaps_journaled(mid_b, mid_e - mid_b)) {
    stats_.add(stats_.zero_skips);
    if (durable) writer_.flush();  // the hole may not be durable yet
  } else {
    // The device first: if a fast zero is refused, nothing has changed. An eligible zero
    // (a fast one comes here) is one crash-atomic operation there too.
    const bool atomic = atomic_eligible(offset, length, logical_block_size_, atomic_write_unit_max_);
    writer_.zero(mid_b, mid_e - mid_b, options, atomic, durable);
  }
  invalidate(mid_b, mid_e, guard);
  // The partial edge blocks: cached writes of zeroes, their edges settled above.
  if (offset < mid_b) write_locked(offset, mid_b - offset, nullptr, fua, guard);
  if (mid_e < end) write_locked(mid_e, end - mid_e, nullptr, fua, guard);
}

// ---- flush and block status -----------------------------------------------------------

void CachedPath::flush() {
  writeback_.flush();
  writer_.flush();
}

std::vector<ExtentMap::Mapping> CachedPath::map_walk(uint64_t begin, uint64_t end, bool req_one,
                                                     size_t max_mappings) {
  std::vector<ExtentMap::Mapping> out;
  for (uint64_t pos = begin; pos < end && out.size() < max_mappings;) {
    ExtentMap::Mapping m = map_.map(pos, end);
    if (req_one && !out.empty() && m.state != out.front().state) break;
    out.push_back(m);
    pos = m.end();
  }
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> CachedPath::dirty_runs(uint64_t begin, uint64_t end) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  // Acquire: a block written back before this load was counted off only after its device
  // write had reached the map (Writeback::submit), so it is seen there instead.
  if (writeback_.dirty_bytes() == 0) return runs;
  for (const FolioCache::Ref& f : cache_.dirty_folios(begin, end - begin)) {
    std::lock_guard fl(f->mutex());
    const size_t fb = f->block_of(std::max(begin, f->offset()));
    const size_t fe = f->block_of(std::min(end, f->end()) - 1) + 1;
    for (size_t i = fb; i < fe; ++i) {
      if (!f->test(Folio::dirty, i) && !f->test(Folio::writeback, i)) continue;
      const uint64_t s = f->block_offset(i), t = s + block_;
      if (!runs.empty() && runs.back().second == s) runs.back().second = t;
      else runs.emplace_back(s, t);
    }
  }
  return runs;
}

std::vector<Extent> CachedPath::extents(uint64_t offset, uint64_t length, bool req_one) {
  check_request_range(size(), offset, length, EINVAL, "block status");
  if (length == 0) return {};
  const uint64_t L = logical_block_size_;
  const uint64_t begin = offset / L * L;
  const uint64_t end = std::min(size(), (offset + length + L - 1) / L * L);
  // overlay_data merges neighbours of one kind already: only trim the whole-block answer
  // to the request (and to its first extent for REQ_ONE).
  auto clip = [&](std::vector<Extent> v) {
    std::vector<Extent> out;
    for (Extent e : v) {
      const uint64_t s = std::max(e.offset, offset), t = std::min(e.offset + e.length, offset + length);
      if (s >= t) continue;
      out.push_back({s, t - s, e.data, e.allocated});
      if (req_one) break;
    }
    return out;
  };
  for (int attempt = 0; attempt < kMaxStatusAttempts; ++attempt) {
    const std::vector<ExtentMap::Mapping> mapped = map_walk(begin, end, req_one, kMaxStatusMappings);
    RACE_HOOK(after_status_map);
    const uint64_t covered = mapped.back().end();
    // The cache after the map: a block dirty when we look is data whatever the map says;
    // one written back before we look reached the map (and moved its cookie) first.
    const auto dirty = dirty_runs(begin, covered);
    // Revalidation point (2). A mapping taken before the cache was looked at may have
    // gone stale in between: a write cached then, written back and evicted before the
    // look, is in neither view, and the reply would call it a hole (E1). Every mapping
    // must still be valid; else map again. Test:
    // ExtentRaceTest.BlockStatusRevalidatesMappingsAfterLookingAtTheCache.
    bool valid = true;
    if (!RACE_CHECK_SKIPPED(skip_status_revalidation))
      for (const ExtentMap::Mapping& m : mapped) valid &= map_.still_valid(m);
    if (!valid) {
      stats_.add(stats_.stale_mappings);
      continue;
    }
    std::vector<Extent> extents;
    for (const ExtentMap::Mapping& m : mapped)
      extents.push_back({m.offset, m.length, m.state == Allocation::data, m.state == Allocation::zero});
    return clip(overlay_data(extents, dirty));
  }
  // The allocation keeps changing under us: ask the device after the cache, as the map
  // would, over one shard at most (a reply may cover less than asked; the client asks on).
  stats_.add(stats_.status_slow);
  const uint64_t slow_end = std::min(end, begin + map_.shard_bytes());
  const auto dirty = dirty_runs(begin, slow_end);
  return clip(overlay_data(honest_extents(device_, L, begin, slow_end - begin), dirty));
}

}  // namespace untorn
