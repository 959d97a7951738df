#include "cache/folio_cache.h"

#include <algorithm>
#include <optional>

namespace untorn {

FolioCache::FolioCache(uint64_t device_size, uint32_t block_size, uint64_t folio_max,
                       uint64_t budget, CacheStats& stats, RangeLock& locks)
    : device_size_(device_size),
      block_(block_size),
      folio_max_(std::max<uint64_t>(folio_max, block_size)),
      budget_(budget),
      stats_(stats),
      locks_(locks),
      directory_(std::make_unique<std::atomic<DirectoryChunk*>[]>(
          ((device_size + folio_max_ - 1) / folio_max_ + kChunk - 1) / kChunk)) {}

FolioCache::Ref FolioCache::lookup_locked(Shard& s, uint64_t offset) {
  auto it = s.regions.find(offset / folio_max_);
  if (it == s.regions.end()) return nullptr;
  Folio* f = it->second.slots[(offset % folio_max_) / block_].load(std::memory_order_relaxed);
  return f ? f->shared_from_this() : nullptr;
}

Folio* FolioCache::find_held(uint64_t offset, bool touch) const {
  const uint64_t number = offset / folio_max_;
  const DirectoryChunk* chunk = directory_[number / kChunk].load(std::memory_order_acquire);
  if (!chunk) return nullptr;
  const std::atomic<Folio*>* table = chunk->tables[number % kChunk].load(std::memory_order_acquire);
  if (!table) return nullptr;
  Folio* f = table[(offset % folio_max_) / block_].load(std::memory_order_acquire);
  if (f && touch && !f->referenced.load(std::memory_order_relaxed))
    f->referenced.store(true, std::memory_order_relaxed);
  return f;
}

FolioCache::Region& FolioCache::region_locked(Shard& s, uint64_t offset) {
  const uint64_t number = offset / folio_max_;
  if (auto it = s.regions.find(number); it != s.regions.end()) return it->second;
  std::atomic<DirectoryChunk*>& slot = directory_[number / kChunk];
  // Acquire: the chunk may have been made under another shard's mutex.
  DirectoryChunk* chunk = slot.load(std::memory_order_acquire);
  if (!chunk) {
    std::lock_guard lk(chunks_mutex_);  // chunks of other shards' regions are made here too
    chunk = slot.load(std::memory_order_acquire);
    if (!chunk) {
      chunks_.push_back(std::make_unique<DirectoryChunk>());
      chunk = chunks_.back().get();
      slot.store(chunk, std::memory_order_release);
    }
  }
  Region fresh;
  fresh.slots = std::make_unique<std::atomic<Folio*>[]>(folio_max_ / block_);
  Region& r = s.regions.emplace(number, std::move(fresh)).first->second;
  chunk->tables[number % kChunk].store(r.slots.get(), std::memory_order_release);
  return r;
}

void FolioCache::index_locked(Shard& s, const Ref& f) {
  // The folio first: should the region's table fail to allocate, nothing has changed.
  auto placed = s.folios.emplace(f->offset(), f).first;
  Region* region;
  try {
    region = &region_locked(s, f->offset());
  } catch (...) {
    s.folios.erase(placed);
    throw;
  }
  Region& r = *region;
  const size_t first = (f->offset() % folio_max_) / block_;
  for (size_t i = first; i < first + f->blocks(); ++i)
    r.slots[i].store(f.get(), std::memory_order_release);
  ++r.folios;
  used_.fetch_add(f->memory_cost(), std::memory_order_relaxed);
  folios_.fetch_add(1, std::memory_order_relaxed);
}

std::map<uint64_t, FolioCache::Ref>::iterator FolioCache::unindex_locked(
    Shard& s, std::map<uint64_t, Ref>::iterator it, std::vector<Ref>& released) {
  const Folio& f = *it->second;
  Region& r = s.regions.find(f.offset() / folio_max_)->second;
  // First, as they may throw and nothing has changed yet.
  released.push_back(it->second);
  if (r.folios == 1 && s.empty_regions.size() == s.empty_regions.capacity())
    s.empty_regions.reserve(std::max<size_t>(8, 2 * s.empty_regions.size()));
  const size_t first = (f.offset() % folio_max_) / block_;
  for (size_t i = first; i < first + f.blocks(); ++i) r.slots[i].store(nullptr, std::memory_order_release);
  if (--r.folios == 0) {
    // Its table is freed later, once no range is held over the region (find_held).
    s.empty_regions.push_back(f.offset() / folio_max_);
    empty_regions_.fetch_add(1, std::memory_order_relaxed);
  }
  used_.fetch_sub(f.memory_cost(), std::memory_order_relaxed);
  folios_.fetch_sub(1, std::memory_order_relaxed);
  return s.folios.erase(it);
}

void FolioCache::reclaim_locked(Shard& s) {
  for (size_t k = 0; k < s.empty_regions.size();) {
    const uint64_t number = s.empty_regions[k];
    auto it = s.regions.find(number);
    bool done = it == s.regions.end() || it->second.folios > 0;  // freed, or in use again
    if (!done) {
      const uint64_t start = number * folio_max_;
      if (auto hold = locks_.try_lock(start, std::min(folio_max_, device_size_ - start),
                                      RangeLock::Mode::exclusive)) {
        // No range is held over the region: no find_held is reading its table.
        directory_[number / kChunk].load(std::memory_order_acquire)->tables[number % kChunk].store(
            nullptr, std::memory_order_release);
        s.regions.erase(it);
        done = true;
      }
    }
    if (done) {
      s.empty_regions[k] = s.empty_regions.back();
      s.empty_regions.pop_back();
      empty_regions_.fetch_sub(1, std::memory_order_relaxed);
    } else {
      ++k;
    }
  }
}

void FolioCache::reclaim_empty_regions() {
  if (empty_regions() == 0) return;
  for (Shard& s : shards_) {
    std::lock_guard lk(s.mutex);
    if (!s.empty_regions.empty()) reclaim_locked(s);
  }
}

FolioCache::Ref FolioCache::find(uint64_t offset, bool touch) {
  Shard& s = shard_for(offset);
  Ref f;
  {
    std::lock_guard lk(s.mutex);
    f = lookup_locked(s, offset);
  }
  if (f && touch && !f->referenced.load(std::memory_order_relaxed))
    f->referenced.store(true, std::memory_order_relaxed);
  return f;
}

uint64_t FolioCache::next_folio(uint64_t offset, uint64_t limit) {
  // Folios live in the shard of their region: look region by region.
  for (uint64_t region = offset / folio_max_ * folio_max_; region < limit; region += folio_max_) {
    Shard& s = shard_for(region);
    std::lock_guard lk(s.mutex);
    // Strictly after `offset` in its own region; from the region's start in later ones.
    auto it = region <= offset ? s.folios.upper_bound(offset) : s.folios.lower_bound(region);
    if (it != s.folios.end() && it->first < std::min(limit, region + folio_max_)) return it->first;
  }
  return limit;
}

bool FolioCache::overlaps_locked(Shard& s, uint64_t begin, uint64_t end) {
  auto it = s.folios.lower_bound(begin);
  if (it != s.folios.end() && it->first < end) return true;
  if (it != s.folios.begin() && std::prev(it)->second->end() > begin) return true;
  return false;
}

FolioCache::Ref FolioCache::find_or_create(uint64_t offset, uint64_t lo, uint64_t hi,
                                           bool* created) {
  *created = false;
  Shard& s = shard_for(offset);
  std::lock_guard lk(s.mutex);
  if (Ref f = lookup_locked(s, offset)) {
    f->referenced.store(true, std::memory_order_relaxed);
    return f;
  }
  hi = std::min(hi, device_size_);
  uint64_t size = folio_max_;
  uint64_t start = offset / size * size;
  while (size > block_ && (start < lo || start + size > hi || overlaps_locked(s, start, start + size))) {
    size /= 2;
    start = offset / size * size;
  }
  auto f = std::make_shared<Folio>(start, static_cast<uint32_t>(size), block_);
  index_locked(s, f);
  *created = true;
  return f;
}

bool FolioCache::drop_if_clean(Ref& folio, const RangeLock::Guard& held) {
  if (!held.holds(folio->offset(), folio->size(), RangeLock::Mode::exclusive)) return false;
  Shard& s = shard_for(folio->offset());
  std::vector<Ref> released;  // freed after the shard mutex (munmap / madvise)
  std::lock_guard lk(s.mutex);
  if (folio.use_count() != 2) return false;  // the index's and the caller's
  {
    std::lock_guard fl(folio->mutex());
    if (folio->dirty_blocks() || folio->writeback_blocks()) return false;
  }
  auto it = s.folios.find(folio->offset());
  if (it == s.folios.end() || it->second != folio) return false;
  unindex_locked(s, it, released);
  released.push_back(std::move(folio));
  return true;
}

void FolioCache::mark_dirty(Folio& folio) noexcept {
  if (folio.listed_dirty.load()) return;  // stays listed while it has dirty blocks
  Shard& s = shard_for(folio.offset());
  std::lock_guard lk(s.mutex);
  auto r = s.dirty.insert(std::move(folio.listing_node));
  if (!r.inserted) folio.listing_node = std::move(r.node);  // listed by an older folio here
  folio.listed_dirty.store(true);
}

void FolioCache::mark_clean(Folio& folio) {
  Shard& s = shard_for(folio.offset());
  std::lock_guard lk(s.mutex);
  std::lock_guard fl(folio.mutex());
  // Not while a block is still under writeback: until its device write has begun, only
  // this listing tells block status that the device does not have its data yet (test:
  // IntegrationTest.ConcurrentConnectionsMatchAModelWithBlockStatus, which failed 3 runs
  // in 12 without it).
  if (folio.dirty_blocks() == 0 && folio.writeback_blocks() == 0) {
    if (auto node = s.dirty.extract(folio.offset()); node && !folio.listing_node)
      folio.listing_node = std::move(node);
    folio.listed_dirty.store(false);
  }
}

std::vector<uint64_t> FolioCache::dirty_offsets(size_t max, size_t* cursor) {
  std::vector<uint64_t> out;
  for (size_t n = 0; n < kShards && out.size() < max; ++n) {
    Shard& s = shards_[*cursor % kShards];
    {
      std::lock_guard lk(s.mutex);
      for (uint64_t o : s.dirty) {
        if (out.size() >= max) break;
        out.push_back(o);
      }
    }
    if (out.size() < max) ++*cursor;  // this shard is drained; the next call starts after it
  }
  return out;
}

std::vector<uint64_t> FolioCache::all_dirty_offsets() {
  std::vector<uint64_t> out;
  for (Shard& s : shards_) {
    std::lock_guard lk(s.mutex);
    out.insert(out.end(), s.dirty.begin(), s.dirty.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t FolioCache::sweep(Shard& s, size_t budget, uint64_t want) {
  uint64_t freed = 0;
  std::vector<Ref> released;  // freed after the shard mutex (munmap / madvise)
  std::lock_guard lk(s.mutex);
  if (!s.empty_regions.empty()) reclaim_locked(s);
  if (s.folios.empty()) return 0;
  auto it = s.folios.lower_bound(s.hand);
  for (size_t n = 0; n < budget && freed < want && !s.folios.empty(); ++n) {
    if (it == s.folios.end()) it = s.folios.begin();
    Folio& f = *it->second;
    if (f.referenced.exchange(false, std::memory_order_relaxed) || it->second.use_count() != 1) {
      ++it;
      continue;
    }
    bool clean;
    {
      std::unique_lock fl(f.mutex(), std::try_to_lock);
      clean = fl.owns_lock() && f.dirty_blocks() == 0 && f.writeback_blocks() == 0;
    }
    // Nobody holds a range over it either: no request is using it through find_held.
    std::optional<RangeLock::Guard> hold =
        clean ? locks_.try_lock(f.offset(), f.size(), RangeLock::Mode::exclusive) : std::nullopt;
    if (!hold) {
      ++it;
      continue;
    }
    freed += f.memory_cost();
    stats_.add(stats_.evictions);
    stats_.add(stats_.evicted_bytes, f.size());
    it = unindex_locked(s, it, released);
  }
  s.hand = it == s.folios.end() ? 0 : it->first;
  return freed;
}

bool FolioCache::evict_to_fit(uint64_t bytes) {
  // Two full turns of the hand at most: the first may only clear referenced bits.
  const uint64_t max_sweeps = 2 * kShards + 2 * folios_.load(std::memory_order_relaxed) / 64 + 2;
  uint64_t sweeps = 0;
  while (used() + bytes > budget_) {
    if (sweeps++ >= max_sweeps) return false;
    const size_t i = clock_shard_.fetch_add(1, std::memory_order_relaxed) % kShards;
    const uint64_t over = used() + bytes;
    if (over > budget_) sweep(shards_[i], 64, over - budget_);
  }
  return true;
}

bool FolioCache::any_block(uint64_t offset, uint64_t length, Folio::Bit bit) {
  const uint64_t end = std::min(offset + length, device_size_);
  bool found = false;
  for_each_folio(offset, end, [&](Ref& f) {
    std::lock_guard fl(f->mutex());
    const uint64_t from = std::max(offset, f->offset()), upto = std::min(end, f->end());
    found = f->any(bit, f->block_of(from), f->block_of(upto - 1) + 1);
    return !found;
  });
  return found;
}

std::vector<FolioCache::Ref> FolioCache::dirty_folios(uint64_t offset, uint64_t length) {
  std::vector<Ref> out;
  const uint64_t end = offset + length;
  // A folio overlapping the range starts at most folio_max before it.
  const uint64_t from = offset >= folio_max_ ? offset - folio_max_ + 1 : 0;
  auto take = [&](Shard& s, uint64_t lo, uint64_t hi) {
    for (auto it = s.dirty.lower_bound(lo); it != s.dirty.end() && *it < hi; ++it) {
      Ref f = lookup_locked(s, *it);
      if (f && f->end() > offset) out.push_back(std::move(f));
    }
  };
  if ((end - from) / folio_max_ <= kShards) {
    for (uint64_t region = from / folio_max_ * folio_max_; region < end; region += folio_max_) {
      Shard& s = shard_for(region);
      std::lock_guard lk(s.mutex);
      take(s, std::max(region, from), std::min(end, region + folio_max_));
    }
  } else {
    for (Shard& s : shards_) {
      std::lock_guard lk(s.mutex);
      take(s, from, end);
    }
    std::sort(out.begin(), out.end(), [](const Ref& a, const Ref& b) { return a->offset() < b->offset(); });
  }
  return out;
}

}  // namespace untorn
