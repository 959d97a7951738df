#include "util/rate_limited_log.h"

#include "util/log.h"

namespace untorn {

bool RateLimitedLog::warn(std::string_view message) {
  std::string line;
  {
    std::lock_guard lock(mu_);
    const auto now = clock_();
    if (logged_any_ && now - last_ < interval_) {
      ++suppressed_;
      return false;
    }
    line = std::string(message);
    if (suppressed_ > 0)
      line += " (" + std::to_string(suppressed_) + " similar message(s) suppressed in the last " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - last_).count()) +
              "s)";
    logged_any_ = true;
    last_ = now;
    suppressed_ = 0;
  }
  log_warning(line);
  return true;
}

uint64_t RateLimitedLog::suppressed() const {
  std::lock_guard lock(mu_);
  return suppressed_;
}

}  // namespace untorn
