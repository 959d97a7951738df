// plugin/stats_file.h — the stats file (stats.file): the cache's counters, one JSON object
// a line, appended every stats.interval and once more at shutdown.
//
// Owns: the file descriptor (O_APPEND, created 0644 when missing; opened at construction
// so a bad path fails at startup, before nbdkit forks). Each line is one write(2), so
// readers never see half a line from us. Line format, version 1:
//   {"format":"untorn-stats","version":1,"time":"2026-11-22T10:00:00.123Z",
//    "uptime_ms":10003,"final":false,"counters":{"read_hits":{"value":1,"unit":"requests",
//    "kind":"total"},...}}
// A write that fails is logged (rate-limited) and the next interval tries again.
#pragma once

#include <chrono>
#include <string>

#include "cache/cache_stats.h"
#include "util/rate_limited_log.h"

namespace untorn {

class StatsFile {
 public:
  explicit StatsFile(std::string path);  // throws IoError naming stats.file
  ~StatsFile();
  StatsFile(const StatsFile&) = delete;
  StatsFile& operator=(const StatsFile&) = delete;

  void append(const CacheCounters& counters, bool final);
  // The JSON line for `counters` (no newline); public for tests.
  static std::string json_line(const CacheCounters& counters, bool final,
                               std::chrono::system_clock::time_point now,
                               std::chrono::milliseconds uptime);

 private:
  std::string path_;
  int fd_;
  std::chrono::steady_clock::time_point started_;
  RateLimitedLog failure_log_;
};

}  // namespace untorn
