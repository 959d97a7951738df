// tests/support/faulty_device.h — a BlockDevice that forwards to another and fails on cue.
//
// Holds a reference to the real device (which must outlive it). fail_reads/fail_writes
// make the next n calls of that kind throw IoError(err) without touching the device, so
// tests can check that errors reach the caller with their errno and change nothing.
#pragma once

#include <atomic>

#include "device/block_device.h"
#include "util/io_error.h"

namespace untorn::testing {

class FaultyDevice final : public BlockDevice {
 public:
  explicit FaultyDevice(BlockDevice& inner) : inner_(inner) {}

  void fail_reads(int n, int err = EIO) { read_err_ = err; reads_to_fail_ = n; }
  void fail_writes(int n, int err = EIO) { write_err_ = err; writes_to_fail_ = n; }
  void fail_syncs(int n, int err = EIO) { sync_err_ = err; syncs_to_fail_ = n; }

  uint64_t size() const override { return inner_.size(); }
  uint32_t io_align() const override { return inner_.io_align(); }
  const StorageInfo& storage() const override { return inner_.storage(); }
  void read(uint64_t offset, std::span<std::byte> dst) override {
    maybe_fail(reads_to_fail_, read_err_, "injected read error");
    inner_.read(offset, dst);
  }
  void write(uint64_t offset, std::span<const std::byte> src) override {
    maybe_fail(writes_to_fail_, write_err_, "injected write error");
    inner_.write(offset, src);
  }
  void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) override {
    maybe_fail(writes_to_fail_, write_err_, "injected zero error");
    inner_.write_zeroes(offset, length, options);
  }
  void sync() override {
    maybe_fail(syncs_to_fail_, sync_err_, "injected sync error");
    inner_.sync();
  }
  std::vector<Extent> extents(uint64_t offset, uint64_t length) override {
    return inner_.extents(offset, length);
  }
  Extent allocation_at(uint64_t offset, uint64_t limit) override {
    return inner_.allocation_at(offset, limit);  // the real lseek probe
  }

 private:
  static void maybe_fail(std::atomic<int>& left, int err, const char* what) {
    int n = left.load();
    while (n > 0) {
      if (left.compare_exchange_weak(n, n - 1)) throw IoError(err, what);
    }
  }

  BlockDevice& inner_;
  std::atomic<int> reads_to_fail_{0}, writes_to_fail_{0}, syncs_to_fail_{0};
  int read_err_ = EIO, write_err_ = EIO, sync_err_ = EIO;
};

}  // namespace untorn::testing
