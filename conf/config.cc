#include "conf/config.h"

namespace untorn {

const char* to_string(CacheMode mode) {
  switch (mode) {
    case CacheMode::writeback: return "writeback";
    case CacheMode::writethrough: return "writethrough";
    case CacheMode::uncached: return "uncached";
  }
  return "?";
}

const char* to_string(JournalMode mode) {
  switch (mode) {
    case JournalMode::automatic: return "auto";
    case JournalMode::always: return "always";
    case JournalMode::never: return "never";
  }
  return "?";
}

}  // namespace untorn
