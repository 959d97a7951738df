#include "device/aio_context.h"

#include <cerrno>
#include <vector>

#include "util/io_error.h"

namespace untorn {
namespace {

constexpr int kQueueDepth = 64;

class ThreadAioContext {
 public:
  ThreadAioContext() {
    int r = io_setup(kQueueDepth, &ctx_);
    if (r < 0) {
      ctx_ = nullptr;
      setup_error_ = -r;
    }
  }
  ~ThreadAioContext() {
    if (ctx_) io_destroy(ctx_);
  }
  ThreadAioContext(const ThreadAioContext&) = delete;
  ThreadAioContext& operator=(const ThreadAioContext&) = delete;

  io_context_t get() {
    if (!ctx_) throw IoError::from_errno(setup_error_, "io_setup (check /proc/sys/fs/aio-max-nr)");
    return ctx_;
  }

 private:
  io_context_t ctx_ = nullptr;
  int setup_error_ = 0;
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
  thread_local ThreadAioContext context;
  io_context_t ctx = context.get();
  for (size_t i = 0; i < ops.size(); i += kQueueDepth)
    submit_chunk(ctx, ops.subspan(i, std::min<size_t>(kQueueDepth, ops.size() - i)));
}

}  // namespace untorn
