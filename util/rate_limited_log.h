// util/rate_limited_log.h — a warning that repeats (a failing writeback, a stats file that
// cannot be written) logged at most once per interval, with a count of what was held back.
//
// Owns: the time of the last message logged and the number suppressed since. The first
// message always goes out; within `interval` of it the rest are only counted; the next
// one after the interval goes out with "(N similar message(s) suppressed in the last Ts)".
// Thread-safe. The clock is injectable so tests never sleep.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace untorn {

class RateLimitedLog {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  explicit RateLimitedLog(std::chrono::seconds interval = std::chrono::seconds(10),
                          Clock clock = &std::chrono::steady_clock::now)
      : interval_(interval), clock_(std::move(clock)) {}

  // Logs `message` as a warning now, or counts it as suppressed. Returns true if logged.
  bool warn(std::string_view message);
  uint64_t suppressed() const;

 private:
  const std::chrono::seconds interval_;
  const Clock clock_;
  mutable std::mutex mu_;
  bool logged_any_ = false;
  std::chrono::steady_clock::time_point last_;
  uint64_t suppressed_ = 0;
};

}  // namespace untorn
