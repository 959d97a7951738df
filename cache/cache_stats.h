// cache/cache_stats.h — the cache's counters (observability: -D untorn.stats=1, tests).
//
// Owns plain atomic counters, updated with relaxed ordering from every path; a snapshot
// is a consistent-enough view for logs and for tests that wait for quiescence first.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace untorn {

// One counter as the stats file and the log show it: its name, its unit ("bytes",
// "requests", ...), whether it is a gauge (a value now) or a running total, and its value.
struct CounterField {
  const char* name;
  const char* unit;
  bool gauge;
  uint64_t value;
};

struct CacheCounters {
  uint64_t read_hits = 0;          // read requests served from the cache alone
  uint64_t read_misses = 0;        // read requests that needed the device
  uint64_t write_requests = 0;
  uint64_t dirty_bytes = 0;        // now
  uint64_t cached_bytes = 0;       // now: memory charged to the budget
  uint64_t folios = 0;             // now
  uint64_t writeback_bytes = 0;    // written to the device by writeback, total
  uint64_t writeback_groups = 0;   // crash-atomic groups written back
  uint64_t writeback_batches = 0;
  uint64_t writeback_errors = 0;
  uint64_t journal_commits = 0;    // fdatasyncs of the journal for records
  uint64_t device_syncs = 0;       // fdatasyncs of the backing file
  uint64_t shared_syncs = 0;       // flush/FUA syncs answered by another request's fdatasync
  uint64_t direct_writes = 0;      // uncached writes sent straight to the device, no folio
  uint64_t durable_writes = 0;     // FUA/writethrough writes made durable by RWF_DSYNC, no fdatasync
  uint64_t evictions = 0;
  uint64_t evicted_bytes = 0;
  uint64_t throttle_waits = 0;     // writers held back at the dirty limit
  uint64_t memory_waits = 0;       // requests that had to free memory first
  uint64_t readahead_bytes = 0;
  uint64_t prefetch_bytes = 0;
  uint64_t hole_fill_bytes = 0;    // read misses zero-filled from the extent map, no device I/O
  uint64_t stale_mappings = 0;     // mappings found stale at a revalidation point, re-mapped
  uint64_t status_slow = 0;        // block status answered from the device after retries
  uint64_t zero_skips = 0;         // zeroes and trims of ranges the device already has as zeroes
  uint64_t extent_entries = 0;     // now: extent map runs (in run lists)
  uint64_t extent_bitmaps = 0;     // now: extent map shards held as bitmaps (fragmented)
  uint64_t extent_bytes = 0;       // now: extent map memory (estimate)
  uint64_t extent_probes = 0;      // SEEK_DATA/SEEK_HOLE probes

  // Every counter, in a fixed order (the order of to_string and of the stats file).
  std::vector<CounterField> fields() const;
  // "read_hits=1 read_misses=0 ..."
  std::string to_string() const;
};

class CacheStats {
 public:
  void add(std::atomic<uint64_t>& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
  // The running totals; the "now" gauges (dirty, cached, folios) and the journal's and
  // device's sync counts are filled in by their owners.
  CacheCounters snapshot() const;

  std::atomic<uint64_t> read_hits{0}, read_misses{0}, write_requests{0};
  std::atomic<uint64_t> writeback_bytes{0}, writeback_groups{0}, writeback_batches{0};
  std::atomic<uint64_t> writeback_errors{0}, evictions{0}, evicted_bytes{0};
  std::atomic<uint64_t> throttle_waits{0}, memory_waits{0}, readahead_bytes{0}, prefetch_bytes{0};
  std::atomic<uint64_t> hole_fill_bytes{0}, stale_mappings{0}, status_slow{0}, zero_skips{0};
  std::atomic<uint64_t> direct_writes{0};
};

}  // namespace untorn
