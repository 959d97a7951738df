// conf/units.h — parsing of the human-friendly values a config may hold.
//
// Owns nothing; pure functions. Every parser returns std::nullopt on anything it does not
// accept completely (no trailing garbage, no overflow, no negative numbers), so the caller
// can report the key and line that held the bad value.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace untorn::conf {

// "4096", "64K", "64k", "64KiB", "1G", "2T": a byte count; suffixes are powers of 1024.
std::optional<uint64_t> parse_size(std::string_view text);

// "5s", "500ms", "2m", "1h", or a bare number of seconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// true/false, yes/no, on/off, 1/0 (case-insensitive).
std::optional<bool> parse_bool(std::string_view text);

// A plain non-negative decimal integer.
std::optional<uint64_t> parse_uint(std::string_view text);

// 65536 -> "64K", 4096 -> "4K", 1000 -> "1000": the shortest exact spelling.
std::string format_size(uint64_t bytes);

constexpr bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace untorn::conf
