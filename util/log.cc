#include "util/log.h"

#include <cstdio>
#include <utility>

namespace untorn {
namespace {

void stderr_sink(LogLevel level, std::string_view message) {
  if (level == LogLevel::debug) return;
  const char* prefix = level == LogLevel::warning ? "untorn: warning: " : "untorn: ";
  std::fprintf(stderr, "%s%.*s\n", prefix, static_cast<int>(message.size()), message.data());
}

LogSink& sink() {
  static LogSink s = stderr_sink;
  return s;
}

}  // namespace

LogSink set_log_sink(LogSink s) { return std::exchange(sink(), s ? std::move(s) : LogSink(stderr_sink)); }

void log(LogLevel level, std::string_view message) { sink()(level, message); }

}  // namespace untorn
