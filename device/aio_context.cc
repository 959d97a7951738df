#include "device/aio_context.h"

#include <cerrno>
#include <mutex>
#include <vector>

#include "util/io_error.h"

namespace untorn {
namespace {

constexpr int kQueueDepth = 64;

class AioContextPool {
 public:
  ~AioContextPool() {
    for (io_context_t ctx : free_) io_destroy(ctx);
  }
  io_context_t acquire() {
    {
      std::lock_guard lk(mutex_);
      if (!free_.empty()) {
        io_context_t ctx = free_.back();
        free_.pop_back();
        return ctx;
      }
    }
    io_context_t ctx = nullptr;
    int r = io_setup(kQueueDepth, &ctx);
    if (r < 0) throw IoError::from_errno(-r, "io_setup (check /proc/sys/fs/aio-max-nr)");
    return ctx;
  }
  void release(io_context_t ctx) {
    std::lock_guard lk(mutex_);
    free_.push_back(ctx);
  }

 private:
  std::mutex mutex_;
  std::vector<io_context_t> free_;
};

AioContextPool& pool() {
  static AioContextPool p;
  return p;
}

class Lease {
 public:
  Lease() : ctx_(pool().acquire()) {}
  ~Lease() {
    if (discard_) io_destroy(ctx_);  // may still have ops in flight: never reuse it
    else pool().release(ctx_);
  }
  void discard() { discard_ = true; }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  io_context_t get() const { return ctx_; }

 private:
  io_context_t ctx_;
  bool discard_ = false;
};

void submit_chunk(io_context_t ctx, std::span<AioOp> ops) {
  std::vector<iocb> cbs(ops.size());
  std::vector<iocb*> ptrs(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    AioOp& op = ops[i];
    if (op.kind == AioOp::Kind::read)
      io_prep_pread(&cbs[i], op.fd, op.buf, op.length, static_cast<long long>(op.offset));
    else
      io_prep_pwrite(&cbs[i], op.fd, op.buf, op.length, static_cast<long long>(op.offset));
    cbs[i].aio_rw_flags = static_cast<unsigned>(op.rw_flags);
    cbs[i].data = &op;
    ptrs[i] = &cbs[i];
  }
  size_t submitted = 0;
  while (submitted < ptrs.size()) {
    int r = io_submit(ctx, static_cast<long>(ptrs.size() - submitted), ptrs.data() + submitted);
    if (r == -EINTR || r == -EAGAIN) continue;
    if (r < 0) {
      // Reap what was submitted before giving up, so no op outlives its buffer.
      for (size_t i = submitted; i < ptrs.size(); ++i) ops[i].result = r;
      ptrs.resize(submitted);
      if (submitted == 0) throw IoError::from_errno(-r, "io_submit");
      break;
    }
    submitted += static_cast<size_t>(r);
  }
  io_event events[kQueueDepth];
  size_t done = 0;
  while (done < submitted) {
    int r = io_getevents(ctx, 1, kQueueDepth, events, nullptr);
    if (r == -EINTR) continue;
    if (r < 0) throw IoError::from_errno(-r, "io_getevents");
    for (int i = 0; i < r; ++i) {
      auto* op = static_cast<AioOp*>(events[i].data);
      op->result = static_cast<int64_t>(events[i].res);
    }
    done += static_cast<size_t>(r);
  }
}

}  // namespace

void aio_submit_and_wait(std::span<AioOp> ops) {
  Lease lease;
  io_context_t ctx = lease.get();
  try {
    for (size_t i = 0; i < ops.size(); i += kQueueDepth)
      submit_chunk(ctx, ops.subspan(i, std::min<size_t>(kQueueDepth, ops.size() - i)));
  } catch (...) {
    lease.discard();  // io_getevents failed with ops outstanding
    throw;
  }
}

}  // namespace untorn
