// util/log.h — the one logging sink of the untorn library.
//
// Owns: a process-wide sink function. Code below plugin/ (conf/, device/, cache/) never
// calls nbdkit directly; it logs here, and plugin/ installs a sink that forwards to
// nbdkit_error (warnings, notices) and nbdkit_debug. Tests install a capturing sink. The
// default sink (tools, tests) writes warnings and notices to stderr.
// Invariant: set_log_sink is called before worker threads start (at load / config time);
// logging itself is thread-safe as long as the sink is.
#pragma once

#include <functional>
#include <string_view>

namespace untorn {

enum class LogLevel { debug, info, warning };

using LogSink = std::function<void(LogLevel, std::string_view)>;

// Replaces the sink; returns the previous one so tests can restore it.
LogSink set_log_sink(LogSink sink);

void log(LogLevel level, std::string_view message);
inline void log_debug(std::string_view m) { log(LogLevel::debug, m); }
inline void log_info(std::string_view m) { log(LogLevel::info, m); }
inline void log_warning(std::string_view m) { log(LogLevel::warning, m); }

}  // namespace untorn
