// device/aio_context.h — a libaio queue private to the calling thread.
//
// Owns one io_context_t per thread (io_setup on first use, io_destroy when the thread
// exits), so submitting and reaping never needs a lock or a dispatcher: a thread submits
// its batch and waits for exactly that batch. Each nbdkit worker thread gets its own.
// Invariant: never used across fork (contexts are made lazily, after nbdkit forks).
#pragma once

#include <libaio.h>

#include <cstdint>
#include <span>

namespace untorn {

struct AioOp {
  enum class Kind { read, write } kind;
  int fd;
  void* buf;          // must meet the descriptor's O_DIRECT alignment
  uint64_t length;
  uint64_t offset;
  int64_t result = 0; // filled in: bytes transferred, or -errno
};

// Submits every op as one io_submit batch (in chunks of the queue depth if larger) and
// waits for all of them. Never throws for a failed op: each op's result says how it went.
// Throws IoError only when the queue itself fails (io_setup or io_submit refusing).
void aio_submit_and_wait(std::span<AioOp> ops);

}  // namespace untorn
