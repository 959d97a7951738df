#include "util/rate_limited_log.h"

#include <vector>

#include "util/log.h"

namespace untorn {
namespace {

std::string suppressed_note(uint64_t n, std::chrono::steady_clock::duration since) {
  return std::to_string(n) + " similar message(s) suppressed in the last " +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(since).count()) + "s";
}

}  // namespace

RateLimitedLog::RateLimitedLog(std::chrono::seconds interval, Clock clock, Emit emit)
    : interval_(interval), clock_(std::move(clock)), emit_(std::move(emit)) {}

RateLimitedLog::~RateLimitedLog() { flush(); }

void RateLimitedLog::emit(std::string_view line) const {
  if (emit_) emit_(line);
  else log_warning(line);
}

bool RateLimitedLog::warn(std::string_view key, std::string_view message) {
  std::string line;
  {
    std::lock_guard lock(mu_);
    const auto now = clock_();
    auto it = keys_.find(key);
    if (it != keys_.end() && now - it->second.last < interval_) {
      ++it->second.suppressed;
      it->second.last_message = std::string(message);
      return false;
    }
    if (it == keys_.end()) it = keys_.emplace(std::string(key), State{}).first;
    line = std::string(message);
    if (it->second.suppressed > 0)
      line += " (" + suppressed_note(it->second.suppressed, now - it->second.last) + ")";
    it->second.last = now;
    it->second.suppressed = 0;
  }
  emit(line);
  return true;
}

uint64_t RateLimitedLog::suppressed(std::string_view key) const {
  std::lock_guard lock(mu_);
  auto it = keys_.find(key);
  return it == keys_.end() ? 0 : it->second.suppressed;
}

void RateLimitedLog::flush() {
  std::vector<std::string> lines;
  {
    std::lock_guard lock(mu_);
    const auto now = clock_();
    for (auto& [key, state] : keys_) {
      if (state.suppressed == 0) continue;
      lines.push_back(suppressed_note(state.suppressed, now - state.last) + ", the last: " +
                      state.last_message);
      state.suppressed = 0;
      state.last = now;
    }
  }
  for (const auto& l : lines) emit(l);
}

}  // namespace untorn
