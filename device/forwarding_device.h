// device/forwarding_device.h — a BlockDevice that forwards every call to another one.
//
// Like LevelDB's EnvWrapper: a device that changes one or two things about another
// (cache/MappedDevice tells the extent map about writes; test devices inject faults, gate
// syncs or race probes) derives from this and overrides only those. Holds a reference to
// the inner device, which must outlive it.
#pragma once

#include "device/block_device.h"

namespace untorn {

class ForwardingDevice : public BlockDevice {
 public:
  explicit ForwardingDevice(BlockDevice& inner) : inner_(inner) {}

  uint64_t size() const override { return inner_.size(); }
  uint32_t io_align() const override { return inner_.io_align(); }
  const StorageInfo& storage() const override { return inner_.storage(); }
  void read(uint64_t offset, std::span<std::byte> dst) override { inner_.read(offset, dst); }
  void write(uint64_t offset, std::span<const std::byte> src) override { inner_.write(offset, src); }
  void write_batch(std::span<WriteRequest> writes) override { inner_.write_batch(writes); }
  bool supports_atomic_write(uint64_t offset, uint64_t length) const override {
    return inner_.supports_atomic_write(offset, length);
  }
  void write_atomic(uint64_t offset, std::span<const std::byte> src) override {
    inner_.write_atomic(offset, src);
  }
  bool supports_durable_writes() const override { return inner_.supports_durable_writes(); }
  void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) override {
    inner_.write_zeroes(offset, length, options);
  }
  void sync() override { inner_.sync(); }
  std::vector<Extent> extents(uint64_t offset, uint64_t length) override {
    return inner_.extents(offset, length);
  }
  Extent allocation_at(uint64_t offset, uint64_t limit) override {
    return inner_.allocation_at(offset, limit);
  }

 protected:
  BlockDevice& inner() { return inner_; }

 private:
  BlockDevice& inner_;
};

}  // namespace untorn
