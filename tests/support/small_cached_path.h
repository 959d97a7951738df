// tests/support/small_cached_path.h — a CachedPath over a JournaledBacking, for tests that
// drive the cache through its hooks.
//
// Owns the temp dir, the device stack (journaled_backing.h) and the path: a 16 MiB cache
// of folios up to 2 MiB, L = 4K, A = 64K, in the cache mode the test asks for. Header
// only, for tests built with the cache's test hooks.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "cache/cached_path.h"
#include "tests/support/journaled_backing.h"
#include "tests/support/temp_dir.h"

namespace untorn::testing {

class SmallCachedPathTest : public ::testing::Test {
 protected:
  void SetUp() override { open_path(CacheMode::writeback); }
  void TearDown() override { path_.reset(); }
  // (Re)builds the path over the same stack in `mode`.
  void open_path(CacheMode mode) {
    path_.reset();
    if (!stack_) stack_ = std::make_unique<JournaledBacking>(dir_, kSmallCachedPathSize);
    Config::Cache c;
    c.mode = mode;
    c.size = 16 << 20;
    c.folio_max = 2 << 20;
    path_ = std::make_unique<CachedPath>(*stack_->mapped, *stack_->map, *stack_->writer, c, 4096, 65536);
  }
  // What the request path reads, and what the backing file holds.
  std::vector<std::byte> read(uint64_t offset, size_t n) {
    std::vector<std::byte> v(n);
    path_->read(offset, v);
    return v;
  }
  std::vector<std::byte> on_device(uint64_t offset, size_t n) {
    std::vector<std::byte> v(n);
    stack_->device->read(offset, v);
    return v;
  }

  static constexpr uint64_t kSmallCachedPathSize = 64 << 20;
  TempDir dir_;
  std::unique_ptr<JournaledBacking> stack_;
  std::unique_ptr<CachedPath> path_;
};

}  // namespace untorn::testing
