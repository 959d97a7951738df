// device/aio_context.h — libaio submission for the calling thread.
//
// A process-wide pool owns the io_context_t queues (io_setup when the pool is empty,
// io_destroy at exit). A call leases one queue for its batch, submits, waits for exactly
// that batch and returns the queue: no dispatcher thread, and a queue is never shared by
// two batches at once. (No thread_local with a destructor: nbdkit's worker threads exit
// and are joined inside a dlopen'ed module, where TLS destructors race the TLS free.)
// Invariant: never used across fork (queues are made lazily, after nbdkit forks).
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
  int rw_flags = 0;   // RWF_* for the op (RWF_DSYNC: durable on completion)
};

// Submits every op as one io_submit batch (in chunks of the queue depth if larger) and
// waits for all of them. Never throws for a failed op: each op's result says how it went.
// Throws IoError only when the queue itself fails (io_setup or io_submit refusing).
void aio_submit_and_wait(std::span<AioOp> ops);

}  // namespace untorn
