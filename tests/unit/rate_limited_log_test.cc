// RateLimitedLog: the first warning goes out, repeats within the interval are counted,
// the next one after it says how many were suppressed. A fake clock: no sleeps.
#include "util/rate_limited_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "util/log.h"

namespace untorn {
namespace {

TEST(RateLimitedLogTest, RepeatsWithinTheIntervalAreCountedAndReported) {
  std::vector<std::string> logged;
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  {
    RateLimitedLog log(std::chrono::seconds(10), [&] { return now; },
                       [&](std::string_view m) { logged.emplace_back(m); });
    EXPECT_TRUE(log.warn("writeback", "writeback failed: EIO"));
    for (int i = 0; i < 5; ++i) {
      now += std::chrono::seconds(1);
      EXPECT_FALSE(log.warn("writeback", "writeback failed: EIO"));
    }
    EXPECT_EQ(log.suppressed("writeback"), 5u);
    // Another kind of message is never held back by this one.
    EXPECT_TRUE(log.warn("pwrite 28", "pwrite: ENOSPC"));
    now += std::chrono::seconds(6);  // 11 s after the first
    EXPECT_TRUE(log.warn("writeback", "writeback failed: ENOSPC"));
    EXPECT_EQ(log.suppressed("writeback"), 0u);
    now += std::chrono::seconds(2);
    EXPECT_FALSE(log.warn("writeback", "writeback failed: EIO at 4096"));
    now += std::chrono::seconds(3);
  }  // the destructor reports what is still held back
  ASSERT_EQ(logged.size(), 4u);
  EXPECT_EQ(logged[0], "writeback failed: EIO");
  EXPECT_EQ(logged[1], "pwrite: ENOSPC");
  EXPECT_EQ(logged[2], "writeback failed: ENOSPC (5 similar message(s) suppressed in the last 11s)");
  EXPECT_EQ(logged[3], "1 similar message(s) suppressed in the last 5s, the last: writeback failed: EIO at 4096");
}

TEST(RateLimitedLogTest, DefaultsToTheWarningSink) {
  std::vector<std::string> logged;
  LogSink previous = set_log_sink([&](LogLevel level, std::string_view m) {
    if (level == LogLevel::warning) logged.emplace_back(m);
  });
  {
    RateLimitedLog log;
    log.warn("k", "a warning");
  }
  set_log_sink(previous);
  EXPECT_EQ(logged, std::vector<std::string>{"a warning"});
}

}  // namespace
}  // namespace untorn
