#include "plugin/stats_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "util/io_error.h"

namespace untorn {

StatsFile::StatsFile(std::string path)
    : path_(std::move(path)),
      fd_(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)),
      started_(std::chrono::steady_clock::now()) {
  if (fd_ < 0) throw IoError::from_errno(errno, "stats.file: " + path_ + ": cannot open");
}

StatsFile::~StatsFile() { ::close(fd_); }

std::string StatsFile::json_line(const CacheCounters& counters, bool final,
                                 std::chrono::system_clock::time_point now,
                                 std::chrono::milliseconds uptime) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char stamp[40];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  char millis[8];
  std::snprintf(millis, sizeof millis, ".%03dZ", static_cast<int>(ms % 1000));
  std::string s = "{\"format\":\"untorn-stats\",\"version\":1,\"time\":\"" + std::string(stamp) +
                  millis + "\",\"uptime_ms\":" + std::to_string(uptime.count()) +
                  ",\"final\":" + (final ? "true" : "false") + ",\"counters\":{";
  bool first = true;
  for (const CounterField& f : counters.fields()) {
    if (!first) s += ',';
    first = false;
    s += "\"" + std::string(f.name) + "\":{\"value\":" + std::to_string(f.value) + ",\"unit\":\"" +
         f.unit + "\",\"kind\":\"" + (f.gauge ? "gauge" : "total") + "\"}";
  }
  return s + "}}";
}

void StatsFile::append(const CacheCounters& counters, bool final) {
  const auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started_);
  const std::string line = json_line(counters, final, std::chrono::system_clock::now(), uptime) + "\n";
  ssize_t n;
  do n = ::write(fd_, line.data(), line.size());
  while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(line.size()))
    failure_log_.warn("stats.file", "stats.file: " + path_ + ": cannot append the stats line: " +
                      (n < 0 ? std::strerror(errno) : "short write"));
}

}  // namespace untorn
