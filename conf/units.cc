#include "conf/units.h"

#include <cctype>
#include <limits>

namespace untorn::conf {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits "64KiB" into 64 and "kib". Returns nullopt when there is no leading number or it
// overflows.
std::optional<std::pair<uint64_t, std::string>> split_number(std::string_view text) {
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) return std::nullopt;
  return std::pair{value, lower(text.substr(i))};
}

}  // namespace

std::optional<uint64_t> parse_uint(std::string_view text) {
  auto parts = split_number(text);
  if (!parts || !parts->second.empty()) return std::nullopt;
  return parts->first;
}

std::optional<uint64_t> parse_size(std::string_view text) {
  auto parts = split_number(text);
  if (!parts) return std::nullopt;
  auto [value, suffix] = *parts;
  if (suffix.empty() || suffix == "b") return value;
  static constexpr std::string_view units = "kmgtp";
  size_t shift_index = units.find(suffix[0]);
  if (shift_index == std::string_view::npos) return std::nullopt;
  std::string_view rest = std::string_view(suffix).substr(1);
  if (!(rest.empty() || rest == "b" || rest == "ib")) return std::nullopt;
  unsigned shift = 10 * static_cast<unsigned>(shift_index + 1);
  if (value > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return value << shift;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto parts = split_number(text);
  if (!parts) return std::nullopt;
  auto [value, suffix] = *parts;
  uint64_t factor;
  if (suffix.empty() || suffix == "s") factor = 1000;
  else if (suffix == "ms") factor = 1;
  else if (suffix == "m" || suffix == "min") factor = 60'000;
  else if (suffix == "h") factor = 3'600'000;
  else return std::nullopt;
  if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / factor) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(value * factor));
}

std::optional<bool> parse_bool(std::string_view text) {
  std::string v = lower(text);
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  return std::nullopt;
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* suffixes[] = {"", "K", "M", "G", "T", "P"};
  size_t i = 0;
  while (i + 1 < std::size(suffixes) && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++i;
  }
  return std::to_string(bytes) + suffixes[i];
}

}  // namespace untorn::conf
