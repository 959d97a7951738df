// cache/request_path.h — what plugin/ asks of untorn, one method per NBD command.
//
// Implementations: DirectPath (no cache; this issue) and, later, the folio cache's
// writeback / writethrough / uncached paths. Every method may be called from many
// threads at once. Failures throw IoError carrying the errno for the client; a failed
// request leaves the device in a state some complete, ordered set of requests explains.
// Requests may have any offset and length within size(); out-of-range requests fail
// with EINVAL (read, trim, extents, prefetch) or ENOSPC (write, zero), as NBD says.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "device/block_device.h"

namespace untorn {

class RequestPath {
 public:
  virtual ~RequestPath() = default;

  virtual uint64_t size() const = 0;
  virtual void read(uint64_t offset, std::span<std::byte> dst) = 0;
  // fua: the write is durable when this returns (D2).
  virtual void write(uint64_t offset, std::span<const std::byte> src, bool fua) = 0;
  virtual void zero(uint64_t offset, uint64_t length, ZeroOptions options, bool fua) = 0;
  virtual void trim(uint64_t offset, uint64_t length, bool fua) = 0;
  // Every write completed before flush() was called is durable when it returns (D1).
  virtual void flush() = 0;
  // Allocation of the range for NBD block status; never reports data as a hole (E1).
  // Sorted and contiguous from `offset`; it may end before offset+length (a bounded
  // reply). req_one (NBD_CMD_FLAG_REQ_ONE): the first extent matters, as long as it can be.
  virtual std::vector<Extent> extents(uint64_t offset, uint64_t length, bool req_one = false) = 0;
  virtual void prefetch(uint64_t offset, uint64_t length) = 0;
};

}  // namespace untorn
