// plugin/server.h — the export being served: config, device and request path together.
//
// Owns: the BackingFile and the RequestPath over it (the path holds a reference to the
// device, so the device is declared first and outlives it). Built once in nbdkit's
// get_ready (before nbdkit forks, so errors reach the user's terminal), destroyed at
// unload. Nothing here calls nbdkit: plugin/untorn_plugin.cc is the only file that does.
#pragma once

#include <memory>
#include <string>

#include "cache/request_path.h"
#include "conf/config.h"
#include "device/backing_file.h"

namespace untorn {

class Server {
 public:
  explicit Server(Config config);

  const Config& config() const { return config_; }
  RequestPath& path() { return *path_; }
  const BackingFile& device() const { return *device_; }
  // "untorn: logical_block_size=4096 atomic_write_unit_max=65536 ..."
  const std::string& description() const { return description_; }

  // NBD block size constraints: minimum L, preferred max(A, 4096), maximum 32 MiB. The
  // maximum must stay >= A, or QEMU would split a guest's atomic write.
  uint32_t min_block_size() const { return config_.device.logical_block_size; }
  uint32_t preferred_block_size() const;
  static constexpr uint32_t kMaxBlockSize = 32u << 20;

 private:
  Config config_;
  std::unique_ptr<BackingFile> device_;
  std::unique_ptr<RequestPath> path_;
  std::string description_;
};

}  // namespace untorn
