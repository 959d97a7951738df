// plugin/untorn_plugin.cc — nbdkit glue, and the only file that calls nbdkit.
//
// Translates each callback into a call on the Server, and every C++ error into
// nbdkit_error + nbdkit_set_error: no exception ever crosses into nbdkit (guarded()).
// State: the ConfigLoader fills during config, and the Server from get_ready to unload.
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <new>

#include "conf/config_loader.h"
#include "plugin/nbdkit_argv.h"
#include "plugin/server.h"
#include "util/io_error.h"
#include "util/log.h"
#include "util/rate_limited_log.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

// -D untorn.stats=1: log the cache's counters every stats.interval and at exit.
extern "C" NBDKIT_DLL_PUBLIC int untorn_debug_stats;
NBDKIT_DLL_PUBLIC int untorn_debug_stats = 0;

namespace {

using untorn::IoError;
using untorn::RateLimitedLog;
using untorn::Server;

untorn::conf::ConfigLoader loader;
std::unique_ptr<untorn::Config> config;
std::unique_ptr<Server> server;

// Failed requests of one callback and errno logged at most once per 10 s with a count (a
// broken device fails every request; the client gets its errno each time regardless).
RateLimitedLog& request_errors() {
  static RateLimitedLog log(std::chrono::seconds(10), &std::chrono::steady_clock::now,
                            [](std::string_view m) {
                              nbdkit_error("%.*s", static_cast<int>(m.size()), m.data());
                            });
  return log;
}

// Runs f; turns whatever it throws into an nbdkit error with the right errno. `what`
// names the callback for the log.
template <typename F>
int guarded(const char* what, F&& f) noexcept {
  try {
    f();
    return 0;
  } catch (const IoError& e) {
    // A refused fast zero is routine (the client falls back); don't log it as an error.
    if (e.err() == ENOTSUP) nbdkit_debug("%s: %s", what, e.what());
    else
      request_errors().warn(std::string(what) + " " + std::to_string(e.err()),
                            std::string(what) + ": " + e.what());
    nbdkit_set_error(e.err());
  } catch (const std::bad_alloc&) {
    nbdkit_error("%s: out of memory", what);
    nbdkit_set_error(ENOMEM);
  } catch (const std::exception& e) {
    nbdkit_error("%s: %s", what, e.what());
    nbdkit_set_error(EIO);
  } catch (...) {
    nbdkit_error("%s: unknown error", what);
    nbdkit_set_error(EIO);
  }
  return -1;
}

// nbdkit has two log levels: error (always logged, to stderr, syslog or nowhere as
// --log says) and debug (-v). Warnings and notices must reach the operator by default,
// so they go at the error level, worded "warning: ..." and "info: ...".
void log_to_nbdkit(untorn::LogLevel level, std::string_view message) {
  const int n = static_cast<int>(message.size());
  switch (level) {
    case untorn::LogLevel::debug: nbdkit_debug("%.*s", n, message.data()); break;
    case untorn::LogLevel::info: nbdkit_error("info: %.*s", n, message.data()); break;
    case untorn::LogLevel::warning: nbdkit_error("warning: %.*s", n, message.data()); break;
  }
}

void untorn_load() { untorn::set_log_sink(log_to_nbdkit); }

void untorn_unload() {
  request_errors().flush();  // counts still held back; nothing is left for exit time
  server.reset();
  config.reset();
}

void untorn_dump_plugin() {
  const untorn::Config defaults;
  std::printf("untorn_version=%s\n", UNTORN_VERSION);
  std::printf("untorn_logical_block_size=%u\n", defaults.device.logical_block_size);
  std::printf("untorn_atomic_write_unit_min=%u\n", defaults.device.logical_block_size);
  std::printf("untorn_atomic_write_unit_max=%u\n", defaults.device.atomic_write_unit_max);
  std::printf("untorn_max_block_size=%u\n", Server::kMaxBlockSize);
  std::printf("untorn_cache_mode=%s\n", untorn::to_string(defaults.cache.mode));
}

int untorn_config(const char* key, const char* value) {
  return guarded("config", [&] {
    if (std::string_view(key) == "config") loader.set_file(value);
    else loader.add_override(key, value);
  });
}

int untorn_config_complete() {
  try {
    // nbdkit -r: read-only from the start (see plugin/nbdkit_argv.h). Last, so it wins.
    const std::vector<std::string> argv = untorn::own_command_line();
    if (argv.empty())
      nbdkit_error("warning: cannot read /proc/self/cmdline: nbdkit -r is not seen before "
                   "the first connection; set device.readonly=true for a read-only server");
    if (untorn::nbdkit_args_say_readonly(argv)) {
      nbdkit_debug("nbdkit -r: serving read-only (device.readonly=true)");
      loader.add_override("device.readonly", "true");
    }
    config = std::make_unique<untorn::Config>(loader.load());
    return 0;
  } catch (const std::exception& e) {
    nbdkit_error("%s", e.what());
    return -1;
  }
}

int untorn_get_ready() {
  try {
    // librados starts threads when it connects, and threads do not survive the fork that
    // nbdkit makes after get_ready (daemon mode, --run): an RBD image is opened after it.
    if (!config->backing.rbd.empty()) {
      nbdkit_debug("backing.rbd: the RBD image is opened after nbdkit forks");
      return 0;
    }
    server = std::make_unique<Server>(*config);
    return 0;
  } catch (const std::exception& e) {
    nbdkit_error("%s", e.what());
    return -1;
  }
}

int untorn_after_fork() {
  try {
    if (!server) server = std::make_unique<Server>(*config);  // backing.rbd (see get_ready)
    server->start(untorn_debug_stats != 0);
    return 0;
  } catch (const std::exception& e) {
    nbdkit_error("%s", e.what());
    return -1;
  }
}

void untorn_cleanup() {
  if (server) server->shutdown();
}

void* untorn_open(int readonly) {
  // nbdkit refuses writes on a read-only connection itself; say so when untorn did not
  // know (a filter asked for it, or -r spelled in a way nbdkit_argv did not read).
  if (readonly && !server->readonly())
    nbdkit_debug("read-only connection to a read-write untorn server (a filter asked for it)");
  return server.get();
}

Server& srv(void* handle) { return *static_cast<Server*>(handle); }

int64_t untorn_get_size(void* handle) { return static_cast<int64_t>(srv(handle).path().size()); }
int untorn_can_write(void* handle) { return srv(handle).readonly() ? 0 : 1; }
int untorn_can_flush(void*) { return 1; }
int untorn_can_trim(void*) { return 1; }
int untorn_can_zero(void*) { return 1; }
int untorn_can_fast_zero(void*) { return 1; }
int untorn_can_fua(void*) { return NBDKIT_FUA_NATIVE; }
int untorn_can_multi_conn(void*) { return 1; }
int untorn_can_extents(void*) { return 1; }
int untorn_can_cache(void*) { return NBDKIT_CACHE_NATIVE; }
int untorn_is_rotational(void*) { return 0; }

int untorn_block_size(void* handle, uint32_t* minimum, uint32_t* preferred, uint32_t* maximum) {
  *minimum = srv(handle).min_block_size();
  *preferred = srv(handle).preferred_block_size();
  *maximum = Server::kMaxBlockSize;
  return 0;
}

const char* untorn_export_description(void* handle) {
  return srv(handle).description().c_str();
}

std::span<std::byte> bytes(void* buf, uint32_t count) {
  return {static_cast<std::byte*>(buf), count};
}

int untorn_pread(void* handle, void* buf, uint32_t count, uint64_t offset, uint32_t) {
  return guarded("pread", [&] { srv(handle).path().read(offset, bytes(buf, count)); });
}

int untorn_pwrite(void* handle, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("pwrite", [&] {
    srv(handle).check_backing(false);
    srv(handle).path().write(offset, {static_cast<const std::byte*>(buf), count},
                             flags & NBDKIT_FLAG_FUA);
  });
}

int untorn_flush(void* handle, uint32_t) {
  return guarded("flush", [&] {
    srv(handle).check_backing(true);
    srv(handle).path().flush();
  });
}

int untorn_trim(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("trim", [&] {
    srv(handle).check_backing(false);
    srv(handle).path().trim(offset, count, flags & NBDKIT_FLAG_FUA);
  });
}

int untorn_zero(void* handle, uint32_t count, uint64_t offset, uint32_t flags) {
  return guarded("zero", [&] {
    srv(handle).check_backing(false);
    untorn::ZeroOptions options{.may_punch = (flags & NBDKIT_FLAG_MAY_TRIM) != 0,
                                .fast_only = (flags & NBDKIT_FLAG_FAST_ZERO) != 0};
    srv(handle).path().zero(offset, count, options, flags & NBDKIT_FLAG_FUA);
  });
}

int untorn_extents(void* handle, uint32_t count, uint64_t offset, uint32_t flags,
                   struct nbdkit_extents* extents) {
  return guarded("extents", [&] {
    const bool req_one = (flags & NBDKIT_FLAG_REQ_ONE) != 0;
    for (const untorn::Extent& e : srv(handle).path().extents(offset, count, req_one)) {
      const uint32_t type = e.data        ? 0
                            : e.allocated ? NBDKIT_EXTENT_ZERO
                                          : (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
      if (nbdkit_add_extent(extents, e.offset, e.length, type) != 0)
        throw IoError(errno ? errno : EIO, "nbdkit_add_extent failed");
    }
  });
}

int untorn_cache(void* handle, uint32_t count, uint64_t offset, uint32_t) {
  return guarded("cache", [&] { srv(handle).path().prefetch(offset, count); });
}

std::string help_text = untorn::conf::ConfigLoader::help_text() +
                        "Every parameter, the promises and examples: man nbdkit-untorn-plugin";

struct nbdkit_plugin plugin = [] {
  struct nbdkit_plugin p {};
  p.name = "untorn";
  p.longname = "untorn: a block device that never tears an atomic write";
  p.version = UNTORN_VERSION;
  p.description = "Serves a raw backing file with atomic-write guarantees.";
  p.load = untorn_load;
  p.unload = untorn_unload;
  p.dump_plugin = untorn_dump_plugin;
  p.config = untorn_config;
  p.config_complete = untorn_config_complete;
  p.config_help = help_text.c_str();
  p.magic_config_key = "config";
  p.get_ready = untorn_get_ready;
  p.after_fork = untorn_after_fork;
  p.cleanup = untorn_cleanup;
  p.open = untorn_open;
  p.get_size = untorn_get_size;
  p.block_size = untorn_block_size;
  p.export_description = untorn_export_description;
  p.can_write = untorn_can_write;
  p.can_flush = untorn_can_flush;
  p.can_trim = untorn_can_trim;
  p.can_zero = untorn_can_zero;
  p.can_fast_zero = untorn_can_fast_zero;
  p.can_fua = untorn_can_fua;
  p.can_multi_conn = untorn_can_multi_conn;
  p.can_extents = untorn_can_extents;
  p.can_cache = untorn_can_cache;
  p.is_rotational = untorn_is_rotational;
  p.pread = untorn_pread;
  p.pwrite = untorn_pwrite;
  p.flush = untorn_flush;
  p.trim = untorn_trim;
  p.zero = untorn_zero;
  p.extents = untorn_extents;
  p.cache = untorn_cache;
  p.errno_is_preserved = 0;
  return p;
}();

}  // namespace

NBDKIT_REGISTER_PLUGIN(plugin)
