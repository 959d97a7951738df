#include "cache/cache_stats.h"

namespace untorn {

CacheCounters CacheStats::snapshot() const {
  CacheCounters c;
  c.read_hits = read_hits;
  c.read_misses = read_misses;
  c.write_requests = write_requests;
  c.writeback_bytes = writeback_bytes;
  c.writeback_groups = writeback_groups;
  c.writeback_batches = writeback_batches;
  c.writeback_errors = writeback_errors;
  c.evictions = evictions;
  c.evicted_bytes = evicted_bytes;
  c.throttle_waits = throttle_waits;
  c.memory_waits = memory_waits;
  c.readahead_bytes = readahead_bytes;
  c.prefetch_bytes = prefetch_bytes;
  c.hole_fill_bytes = hole_fill_bytes;
  c.stale_mappings = stale_mappings;
  c.status_slow = status_slow;
  c.zero_skips = zero_skips;
  c.direct_writes = direct_writes;
  return c;
}

std::vector<CounterField> CacheCounters::fields() const {
  return {
      {"read_hits", "requests", false, read_hits},
      {"read_misses", "requests", false, read_misses},
      {"write_requests", "requests", false, write_requests},
      {"dirty_bytes", "bytes", true, dirty_bytes},
      {"cached_bytes", "bytes", true, cached_bytes},
      {"folios", "folios", true, folios},
      {"writeback_bytes", "bytes", false, writeback_bytes},
      {"writeback_groups", "groups", false, writeback_groups},
      {"writeback_batches", "batches", false, writeback_batches},
      {"writeback_errors", "errors", false, writeback_errors},
      {"journal_commits", "syncs", false, journal_commits},
      {"device_syncs", "syncs", false, device_syncs},
      {"shared_syncs", "requests", false, shared_syncs},
      {"direct_writes", "requests", false, direct_writes},
      {"durable_writes", "writes", false, durable_writes},
      {"evictions", "folios", false, evictions},
      {"evicted_bytes", "bytes", false, evicted_bytes},
      {"throttle_waits", "waits", false, throttle_waits},
      {"memory_waits", "waits", false, memory_waits},
      {"readahead_bytes", "bytes", false, readahead_bytes},
      {"prefetch_bytes", "bytes", false, prefetch_bytes},
      {"hole_fill_bytes", "bytes", false, hole_fill_bytes},
      {"stale_mappings", "mappings", false, stale_mappings},
      {"status_slow", "requests", false, status_slow},
      {"zero_skips", "requests", false, zero_skips},
      {"extent_entries", "entries", true, extent_entries},
      {"extent_bitmaps", "shards", true, extent_bitmaps},
      {"extent_bytes", "bytes", true, extent_bytes},
      {"extent_probes", "probes", false, extent_probes},
  };
}

std::string CacheCounters::to_string() const {
  std::string s;
  for (const CounterField& f : fields()) {
    if (!s.empty()) s += ' ';
    s += std::string(f.name) + "=" + std::to_string(f.value);
  }
  return s;
}

}  // namespace untorn
