// tests/support/faulty_device.h — a BlockDevice that forwards to another and fails on cue.
//
// Holds a reference to the real device (which must outlive it). fail_reads/fail_writes
// make the next n calls of that kind throw IoError(err) without touching the device, so
// tests can check that errors reach the caller with their errno and change nothing.
#pragma once

#include <atomic>

#include "device/forwarding_device.h"
#include "util/io_error.h"

namespace untorn::testing {

class FaultyDevice final : public ForwardingDevice {
 public:
  explicit FaultyDevice(BlockDevice& inner) : ForwardingDevice(inner) {}

  void fail_reads(int n, int err = EIO) { read_err_ = err; reads_to_fail_ = n; }
  void fail_writes(int n, int err = EIO) { write_err_ = err; writes_to_fail_ = n; }
  void fail_syncs(int n, int err = EIO) { sync_err_ = err; syncs_to_fail_ = n; }

  void read(uint64_t offset, std::span<std::byte> dst) override {
    maybe_fail(reads_to_fail_, read_err_, "injected read error");
    ForwardingDevice::read(offset, dst);
  }
  void write(uint64_t offset, std::span<const std::byte> src) override {
    maybe_fail(writes_to_fail_, write_err_, "injected write error");
    ForwardingDevice::write(offset, src);
  }
  // One write() at a time, so each can fail on cue.
  void write_batch(std::span<WriteRequest> writes) override { BlockDevice::write_batch(writes); }
  // No RWF_ATOMIC: every write goes through write(), where faults are injected.
  bool supports_atomic_write(uint64_t, uint64_t) const override { return false; }
  void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) override {
    maybe_fail(writes_to_fail_, write_err_, "injected zero error");
    ForwardingDevice::write_zeroes(offset, length, options);
  }
  void sync() override {
    maybe_fail(syncs_to_fail_, sync_err_, "injected sync error");
    ForwardingDevice::sync();
  }

 private:
  static void maybe_fail(std::atomic<int>& left, int err, const char* what) {
    int n = left.load();
    while (n > 0) {
      if (left.compare_exchange_weak(n, n - 1)) throw IoError(err, what);
    }
  }

  std::atomic<int> reads_to_fail_{0}, writes_to_fail_{0}, syncs_to_fail_{0};
  int read_err_ = EIO, write_err_ = EIO, sync_err_ = EIO;
};

}  // namespace untorn::testing
