#include "plugin/server.h"

#include <algorithm>

#include "cache/direct_path.h"

namespace untorn {

Server::Server(Config config)
    : config_(std::move(config)),
      device_(BackingFile::open(config_.backing, config_.device.logical_block_size)),
      path_(std::make_unique<DirectPath>(*device_, config_.device.logical_block_size)) {
  description_ = "untorn: logical_block_size=" + std::to_string(config_.device.logical_block_size) +
                 " atomic_write_unit_min=" + std::to_string(config_.device.logical_block_size) +
                 " atomic_write_unit_max=" + std::to_string(config_.device.atomic_write_unit_max) +
                 " cache_mode=direct";
}

uint32_t Server::preferred_block_size() const {
  return std::max<uint32_t>(config_.device.atomic_write_unit_max, 4096);
}

}  // namespace untorn
