#include "conf/units.h"

#include <gtest/gtest.h>

namespace untorn::conf {
namespace {

TEST(UnitsTest, SizesAcceptPlainNumbersAndBinarySuffixes) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("64K"), 65536u);
  EXPECT_EQ(parse_size("64k"), 65536u);
  EXPECT_EQ(parse_size("64KiB"), 65536u);
  EXPECT_EQ(parse_size("1M"), 1u << 20);
  EXPECT_EQ(parse_size("1G"), 1u << 30);
  EXPECT_EQ(parse_size("2T"), uint64_t{2} << 40);
  EXPECT_EQ(parse_size("0"), 0u);
}

TEST(UnitsTest, SizesRejectGarbageAndOverflow) {
  for (const char* bad : {"", "K", "-1", "1.5G", "12 K", "64KB2", "1X", "99999999999999999999",
                          "16777216T", " 4096"})
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
}

TEST(UnitsTest, Durations) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parse_duration("5s"), milliseconds(5000));
  EXPECT_EQ(parse_duration("5"), milliseconds(5000));
  EXPECT_EQ(parse_duration("500ms"), milliseconds(500));
  EXPECT_EQ(parse_duration("2m"), milliseconds(120000));
  EXPECT_EQ(parse_duration("1h"), milliseconds(3600000));
  EXPECT_FALSE(parse_duration("5 s").has_value());
  EXPECT_FALSE(parse_duration("s").has_value());
  EXPECT_FALSE(parse_duration("5d").has_value());
}

TEST(UnitsTest, Bools) {
  EXPECT_EQ(parse_bool("true"), true);
  EXPECT_EQ(parse_bool("Yes"), true);
  EXPECT_EQ(parse_bool("on"), true);
  EXPECT_EQ(parse_bool("0"), false);
  EXPECT_EQ(parse_bool("off"), false);
  EXPECT_FALSE(parse_bool("maybe").has_value());
}

TEST(UnitsTest, FormatSizeIsExactAndShort) {
  EXPECT_EQ(format_size(65536), "64K");
  EXPECT_EQ(format_size(4096), "4K");
  EXPECT_EQ(format_size(1000), "1000");
  EXPECT_EQ(format_size(uint64_t{3} << 30), "3G");
  EXPECT_EQ(format_size(0), "0");
}

TEST(UnitsTest, PowerOfTwo) {
  EXPECT_TRUE(is_power_of_two(512));
  EXPECT_FALSE(is_power_of_two(0));
  EXPECT_FALSE(is_power_of_two(3000));
}

}  // namespace
}  // namespace untorn::conf
