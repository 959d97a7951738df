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
  return c;
}

std::string CacheCounters::to_string() const {
  auto kv = [](const char* k, uint64_t v) { return std::string(k) + "=" + std::to_string(v) + " "; };
  std::string s = kv("read_hits", read_hits) + kv("read_misses", read_misses) +
                  kv("write_requests", write_requests) + kv("dirty_bytes", dirty_bytes) +
                  kv("cached_bytes", cached_bytes) + kv("folios", folios) +
                  kv("writeback_bytes", writeback_bytes) + kv("writeback_groups", writeback_groups) +
                  kv("writeback_batches", writeback_batches) + kv("writeback_errors", writeback_errors) +
                  kv("journal_commits", journal_commits) + kv("evictions", evictions) +
                  kv("evicted_bytes", evicted_bytes) + kv("throttle_waits", throttle_waits) +
                  kv("memory_waits", memory_waits) + kv("readahead_bytes", readahead_bytes) +
                  kv("prefetch_bytes", prefetch_bytes) + kv("hole_fill_bytes", hole_fill_bytes) +
                  kv("stale_mappings", stale_mappings) + kv("status_slow", status_slow) +
                  kv("zero_skips", zero_skips) + kv("extent_entries", extent_entries) +
                  kv("extent_bytes", extent_bytes) + kv("extent_probes", extent_probes);
  s.pop_back();
  return s;
}

}  // namespace untorn
