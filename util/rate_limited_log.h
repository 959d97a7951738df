// util/rate_limited_log.h — messages that repeat (a failing writeback, requests failing on a
// broken device, a stats file that cannot be written) logged at most once per interval per
// kind, with a count of what was held back.
//
// Owns: per key (the kind of message, chosen by the caller: "writeback", "pwrite EIO"),
// the time its last message went out and how many were suppressed since. The first
// message of a key always goes out; within `interval` of it the rest of that key are only
// counted; the next one after the interval goes out with "(N similar message(s)
// suppressed in the last Ts)". Messages of other keys are never held back by it. The
// destructor reports counts still pending, so none is lost at shutdown. Thread-safe; the
// clock is injectable so tests never sleep. The emitter defaults to log_warning.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace untorn {

class RateLimitedLog {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  using Emit = std::function<void(std::string_view)>;

  explicit RateLimitedLog(std::chrono::seconds interval = std::chrono::seconds(10),
                          Clock clock = &std::chrono::steady_clock::now, Emit emit = {});
  ~RateLimitedLog();
  RateLimitedLog(const RateLimitedLog&) = delete;
  RateLimitedLog& operator=(const RateLimitedLog&) = delete;

  // Logs `message` now, or counts it as suppressed under `key`. Returns true if logged.
  bool warn(std::string_view key, std::string_view message);
  uint64_t suppressed(std::string_view key) const;
  // Logs "N similar message(s) suppressed" for every key with a pending count.
  void flush();

 private:
  struct State {
    std::chrono::steady_clock::time_point last;
    uint64_t suppressed = 0;
    std::string last_message;
  };
  void emit(std::string_view line) const;

  const std::chrono::seconds interval_;
  const Clock clock_;
  const Emit emit_;
  mutable std::mutex mu_;
  std::map<std::string, State, std::less<>> keys_;
};

}  // namespace untorn
