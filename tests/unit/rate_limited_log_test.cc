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
  LogSink previous = set_log_sink([&](LogLevel level, std::string_view m) {
    if (level == LogLevel::warning) logged.emplace_back(m);
  });
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  RateLimitedLog log(std::chrono::seconds(10), [&] { return now; });
  EXPECT_TRUE(log.warn("writeback failed: EIO"));
  for (int i = 0; i < 5; ++i) {
    now += std::chrono::seconds(1);
    EXPECT_FALSE(log.warn("writeback failed: EIO"));
  }
  EXPECT_EQ(log.suppressed(), 5u);
  now += std::chrono::seconds(6);  // 11 s after the first
  EXPECT_TRUE(log.warn("writeback failed: ENOSPC"));
  EXPECT_EQ(log.suppressed(), 0u);
  now += std::chrono::seconds(30);
  EXPECT_TRUE(log.warn("writeback failed: EIO"));
  set_log_sink(previous);
  ASSERT_EQ(logged.size(), 3u);
  EXPECT_EQ(logged[0], "writeback failed: EIO");
  EXPECT_EQ(logged[1], "writeback failed: ENOSPC (5 similar message(s) suppressed in the last 11s)");
  EXPECT_EQ(logged[2], "writeback failed: EIO");
}

}  // namespace
}  // namespace untorn
