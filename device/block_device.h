// device/block_device.h — the one interface through which untorn touches its storage.
//
// Like LevelDB's Env: the real backing file implements it, and tests put a recording or
// fault-injecting device in its place. Nothing here knows about folios or NBD.
// Contract for every implementation:
//   - offsets and lengths of read/write are multiples of io_align() and within size();
//     memory may have any alignment (the implementation bounces where it must);
//   - failures throw IoError with the errno the client should see (EIO for I/O errors,
//     ENOSPC passed through, ENOTSUP for a fast zero that would not be fast);
//   - a method returns only when its effect is visible to every later read (not durable:
//     durability needs sync());
//   - methods may be called from many threads at once on disjoint or overlapping ranges;
//     ordering between overlapping requests is the caller's job (cache/RangeLock).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "device/storage_probe.h"

namespace untorn {

struct Extent {
  uint64_t offset;
  uint64_t length;
  bool data;   // false: reads as zeroes: a hole, or with `allocated` zeroed space
  bool allocated = false;  // only with !data: allocated zeroes (NBD "zero", not "hole")
  friend bool operator==(const Extent&, const Extent&) = default;
};

// One write of a batch (BlockDevice::write_batch). The result is filled in per write.
struct WriteRequest {
  uint64_t offset = 0;
  std::span<const std::byte> data;
  int error = 0;          // 0, or the errno the write failed with
  std::string message;    // why, when it failed
  // Durable when it completes (RWF_DSYNC), with no sync(); only where the device says
  // supports_durable_writes(). Says nothing of any other write.
  bool durable = false;
};

struct ZeroOptions {
  bool may_punch = false;  // the range may become a hole (deallocated)
  bool fast_only = false;  // fail with ENOTSUP rather than write zeroes slowly
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual uint64_t size() const = 0;
  // Granularity that read/write offsets and lengths must keep (1 when unconstrained).
  virtual uint32_t io_align() const = 0;
  virtual const StorageInfo& storage() const = 0;

  virtual void read(uint64_t offset, std::span<std::byte> dst) = 0;
  virtual void write(uint64_t offset, std::span<const std::byte> src) = 0;
  // Many independent writes on disjoint ranges, submitted together where the device can
  // (one libaio batch); each is like write(). Never throws for a failed write: its
  // WriteRequest says how it went. No order among them, and none is atomic with another.
  // The default calls write() for each and ignores `durable`: a device that keeps it
  // must offer supports_durable_writes() and override this.
  virtual void write_batch(std::span<WriteRequest> writes);
  // One write that the storage applies whole or not at all across a power loss
  // (pwritev2 RWF_ATOMIC). Only called when supports_atomic_write() says so.
  virtual bool supports_atomic_write(uint64_t offset, uint64_t length) const {
    (void)offset;
    (void)length;
    return false;
  }
  virtual void write_atomic(uint64_t offset, std::span<const std::byte> src) {
    (void)offset;
    (void)src;
    throw_atomic_unsupported();
  }
  // Whether write_batch honours WriteRequest::durable. A failed durable write fails
  // that write only: it must not leave the device in a state where a later sync() could
  // succeed without covering data an earlier one dropped (O_DIRECT: no page cache).
  virtual bool supports_durable_writes() const { return false; }
  // Any byte range; reads back as zeroes afterwards.
  virtual void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) = 0;
  // Makes every completed write durable (fdatasync).
  virtual void sync() = 0;
  // The allocation of [offset, offset+length): sorted, contiguous, covering the range.
  virtual std::vector<Extent> extents(uint64_t offset, uint64_t length) = 0;
  // One probe: the data or hole run holding `offset`, from offset up to where it ends or
  // `limit`, whichever comes first (offset < limit <= size()). The default takes the first
  // extent of extents(); the backing file asks lseek once or twice.
  virtual Extent allocation_at(uint64_t offset, uint64_t limit);

 protected:
  [[noreturn]] static void throw_atomic_unsupported();
};

}  // namespace untorn
