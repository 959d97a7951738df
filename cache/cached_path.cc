#include "cache/cached_path.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "cache/honest_extents.h"
#include "cache/request_range.h"
#include "device/aligned_buffer.h"
#include "util/io_error.h"

namespace untorn {
namespace {

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

CachedPath::CachedPath(BlockDevice& device, AtomicWriter& writer, const Config::Cache& config,
                       uint32_t logical_block_size, uint32_t atomic_write_unit_max)
    : device_(device),
      writer_(writer),
      mode_(config.mode),
      populate_on_read_(config.populate_on_read),
      logical_block_size_(logical_block_size),
      atomic_write_unit_max_(atomic_write_unit_max),
      block_(std::max(logical_block_size, device.io_align())),
      readahead_max_(std::min<uint64_t>(config.folio_max, config.size / 16)),
      cache_(device.size(), block_, config.folio_max, config.size, stats_),
      writeback_(cache_, locks_, writer, stats_, writeback_options(config, atomic_write_unit_max)) {}

CachedPath::~CachedPath() { writeback_.stop(); }

void CachedPath::start_background(std::function<void()> tick) { writeback_.start(std::move(tick)); }

void CachedPath::shutdown() {
  writeback_.stop();
  flush();
}

CacheCounters CachedPath::counters() const {
  CacheCounters c = stats_.snapshot();
  c.dirty_bytes = writeback_.dirty_bytes();
  c.cached_bytes = cache_.used();
  c.folios = cache_.folio_count();
  return c;
}

void CachedPath::make_room(uint64_t bytes) {
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

bool CachedPath::fill(uint64_t b0, uint64_t b1, uint64_t offset, std::span<std::byte> dst,
                      bool populate) {
  const uint64_t end = offset + dst.size();
  bool missed = false;
  auto copy_out = [&](const std::byte* src_at, uint64_t from, uint64_t to) {
    const uint64_t s = std::max(from, offset), t = std::min(to, end);
    if (s < t) std::memcpy(dst.data() + (s - offset), src_at + (s - from), t - s);
  };
  for (uint64_t pos = b0; pos < b1;) {
    FolioCache::Ref f;
    if (populate) {
      bool created;
      f = cache_.find_or_create(pos, b0, b1, &created);
    } else {
      f = cache_.find(pos);
    }
    if (!f) {
      // Not cached and not to be: straight from the device.
      const uint64_t gap_end = cache_.next_folio(pos, b1);
      missed |= pos < end;
      if (pos >= offset && gap_end <= end) {
        device_.read(pos, dst.subspan(pos - offset, gap_end - pos));
      } else {
        AlignedBuffer buffer(gap_end - pos, AlignedBuffer::Uninitialized{});
        device_.read(pos, buffer.span());
        copy_out(buffer.data(), pos, gap_end);
      }
      pos = gap_end;
      continue;
    }
    const uint64_t to = std::min(b1, f->end());
    const size_t fb = f->block_of(pos), fe = f->block_of(to - 1) + 1;
    {
      std::lock_guard fl(f->mutex());
      // Read every run of blocks that is not uptodate into the folio.
      for (size_t i = fb; i < fe;) {
        size_t j = i;
        while (j < fe && !f->test(Folio::uptodate, j)) ++j;
        if (j == i) {
          ++i;
          continue;
        }
        device_.read(f->block_offset(i), {f->block_data(i), (j - i) * size_t{block_}});
        f->set(Folio::uptodate, i, j, true);
        missed |= f->block_offset(i) < end;  // read-ahead beyond the request is no miss
        i = j;
      }
    }
    copy_out(f->block_data(fb), pos, to);
    pos = to;
  }
  return missed;
}

void CachedPath::read(uint64_t offset, std::span<std::byte> dst) {
  check_request_range(size(), offset, dst.size(), EINVAL, "read");
  if (dst.empty()) return;
  const bool populate = populate_on_read_ && mode_ != CacheMode::uncached;
  const uint64_t b0 = align_down(offset);
  const uint64_t b1 = align_up(offset + dst.size());
  const uint64_t ra_end = populate ? std::max(b1, readahead_end(offset, dst.size())) : b1;
  if (populate) make_room(ra_end - b0);
  // A1: shared against every write's exclusive hold.
  auto guard = locks_.lock(b0, ra_end - b0, RangeLock::Mode::shared);
  const bool missed = fill(b0, ra_end, offset, dst, populate);
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
    auto guard = locks_.lock(pos, to - pos, RangeLock::Mode::shared);
    fill(pos, to, pos, {}, true);
    stats_.add(stats_.prefetch_bytes, to - pos);
    pos = to;
  }
}

// ---- writes ---------------------------------------------------------------------------

bool CachedPath::crosses(uint64_t boundary) {
  // A group sticks out over `boundary` when the block at it is joined to the one before
  // and is dirty or under writeback.
  if (boundary == 0 || boundary >= size()) return false;
  FolioCache::Ref f = cache_.find(boundary, false);
  if (!f) return false;
  std::lock_guard fl(f->mutex());
  const size_t i = f->block_of(boundary);
  return f->test(Folio::joined, i) && (f->test(Folio::dirty, i) || f->test(Folio::writeback, i));
}

bool CachedPath::settle_edges(uint64_t b0, uint64_t b1, uint64_t* lock_lo, uint64_t* lock_hi) {
  const bool at_start = crosses(b0), at_end = crosses(b1);
  if (!at_start && !at_end) return true;
  const uint64_t lo = widen_lo(b0), hi = widen_hi(b1);
  if (*lock_lo > lo || *lock_hi < hi) {
    *lock_lo = std::min(*lock_lo, lo);
    *lock_hi = std::max(*lock_hi, hi);
    return false;
  }
  // A group crossing b0 holds the block before it; one crossing b1 the block before b1.
  if (at_start) writeback_.write_range(b0 - block_, b0, false);
  if (at_end) writeback_.write_range(b1 - block_, b1, false);
  return true;
}

std::vector<FolioCache::Ref> CachedPath::copy_in(uint64_t offset, uint64_t length,
                                                 const std::byte* src, bool atomic) {
  const uint64_t b0 = align_down(offset), b1 = align_up(offset + length);
  const uint64_t end = offset + length;
  std::vector<FolioCache::Ref> created_folios;
  int64_t newly_dirty = 0;
  for (uint64_t pos = b0; pos < b1;) {
    bool created;
    FolioCache::Ref f = cache_.find_or_create(pos, b0, b1, &created);
    if (created) created_folios.push_back(f);
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
    {
      std::lock_guard fl(f->mutex());
      became_dirty = f->dirty_blocks() == 0;
      newly_dirty += static_cast<int64_t>((fe - fb) - f->count(Folio::dirty, fb, fe));
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
    pos = to;
  }
  // The block after the write starts a group of its own (any group it was joined to
  // was settled before the copy).
  writeback_.add_dirty(newly_dirty * static_cast<int64_t>(block_));
  return created_folios;
}

void CachedPath::invalidate(uint64_t b0, uint64_t b1) {
  int64_t dropped = 0;
  for (FolioCache::Ref& f : cache_.overlapping(b0, b1 - b0)) {
    const size_t fb = f->block_of(std::max(b0, f->offset()));
    const size_t fe = f->block_of(std::min(b1, f->end()) - 1) + 1;
    {
      std::lock_guard fl(f->mutex());
      dropped += static_cast<int64_t>(f->count(Folio::dirty, fb, fe));
      for (Folio::Bit bit : {Folio::uptodate, Folio::dirty, Folio::joined, Folio::atomic})
        f->set(bit, fb, fe, false);
    }
    cache_.mark_clean(*f);
    if (f->offset() >= b0 && f->end() <= b1) cache_.drop_if_clean(f);
  }
  writeback_.add_dirty(-dropped * static_cast<int64_t>(block_));
}

bool CachedPath::write_locked(uint64_t offset, uint64_t length, const std::byte* src, bool fua,
                              uint64_t* lock_lo, uint64_t* lock_hi) {
  const uint64_t b0 = align_down(offset), b1 = align_up(offset + length);
  // Older writeback of these blocks lands first and their bytes stay put while it runs.
  writeback_.wait_idle(b0, b1);
  if (!settle_edges(b0, b1, lock_lo, lock_hi)) return false;
  const bool atomic = atomic_eligible(offset, length, logical_block_size_, atomic_write_unit_max_);
  std::vector<FolioCache::Ref> created = copy_in(offset, length, src, atomic);
  if (mode_ == CacheMode::writeback && !fua) return true;
  try {
    writeback_.write_range(b0, b1, fua || mode_ == CacheMode::writethrough);
  } catch (const IoError&) {
    // Writethrough: the range is read again from the device next time. Writeback with
    // FUA: the data stays dirty (R1) and the request fails.
    if (mode_ != CacheMode::writeback) invalidate(b0, b1);
    throw;
  }
  if (mode_ == CacheMode::uncached)
    for (FolioCache::Ref& f : created) cache_.drop_if_clean(f);
  return true;
}

void CachedPath::write_request(uint64_t offset, uint64_t length, const std::byte* src, bool fua) {
  stats_.add(stats_.write_requests);
  const uint64_t b0 = align_down(offset), b1 = align_up(offset + length);
  if (mode_ == CacheMode::writeback) writeback_.throttle();
  make_room(b1 - b0);
  uint64_t lo = b0, hi = b1;
  for (;;) {
    auto guard = locks_.lock(lo, hi - lo, RangeLock::Mode::exclusive);
    if (write_locked(offset, length, src, fua, &lo, &hi)) return;
  }
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

void CachedPath::zero_range(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) {
  const uint64_t end = offset + length;
  const uint64_t mid_b = align_up(offset), mid_e = align_down(end);
  if (mid_b >= mid_e) {  // within blocks: a cached write of zeroes
    write_request(offset, length, nullptr, fua);
    return;
  }
  const uint64_t b0 = align_down(offset), b1 = align_up(end);
  if (mode_ == CacheMode::writeback && (b0 != mid_b || b1 != mid_e)) writeback_.throttle();
  make_room(2 * uint64_t{block_});
  auto guard = locks_.lock(widen_lo(b0), widen_hi(b1) - widen_lo(b0), RangeLock::Mode::exclusive);
  writeback_.wait_idle(b0, b1);
  uint64_t lo = widen_lo(b0), hi = widen_hi(b1);
  settle_edges(mid_b, mid_e, &lo, &hi);  // the lock is wide enough already
  // D2 with FUA, D3 in writethrough: the zeroed middle is durable on its own (an edge
  // journaled below would not sync the device for it).
  const bool durable = fua || mode_ == CacheMode::writethrough;
  // The device first: if a fast zero is refused, nothing has changed.
  writer_.zero(mid_b, mid_e - mid_b, options, false, durable);
  invalidate(mid_b, mid_e);
  if (offset < mid_b) write_locked(offset, mid_b - offset, nullptr, fua, &lo, &hi);
  if (mid_e < end) write_locked(mid_e, end - mid_e, nullptr, fua, &lo, &hi);
}

// ---- flush and block status -----------------------------------------------------------

void CachedPath::flush() {
  writeback_.flush();
  writer_.flush();
}

std::vector<Extent> CachedPath::extents(uint64_t offset, uint64_t length) {
  check_request_range(size(), offset, length, EINVAL, "block status");
  if (length == 0) return {};
  // The cache first, then the device: a block written back in between is on the device
  // by the time we ask it, so dirty data is never reported as a hole (E1).
  std::vector<std::pair<uint64_t, uint64_t>> dirty;
  for (const FolioCache::Ref& f : cache_.overlapping(offset, length)) {
    std::lock_guard fl(f->mutex());
    for (size_t i = 0; i < f->blocks(); ++i) {
      if (!f->test(Folio::dirty, i) && !f->test(Folio::writeback, i)) continue;
      const uint64_t s = f->block_offset(i), t = s + block_;
      if (!dirty.empty() && dirty.back().second == s) dirty.back().second = t;
      else dirty.emplace_back(s, t);
    }
  }
  return overlay_data(honest_extents(device_, logical_block_size_, offset, length), dirty);
}

}  // namespace untorn
