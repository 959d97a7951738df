#include "device/backing_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <utility>

#include "conf/units.h"
#include "device/aio_context.h"
#include "device/aligned_buffer.h"
#include "device/bounce_pool.h"
#include "device/journal_file.h"
#include "util/io_error.h"
#include "util/log.h"

namespace untorn {
namespace {

// Big transfers are split so one bounce buffer stays bounded.
constexpr uint64_t kMaxBounce = uint64_t{8} << 20;

[[noreturn]] void fail_open(const std::string& path, const std::string& problem, int err = EINVAL) {
  throw IoError(err, "backing.path: " + path + ": " + problem);
}

class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void create_sparse(const std::string& path, uint64_t size) {
  FdGuard fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) fail_open(path, std::string("cannot create: ") + std::strerror(errno), errno);
  if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0 || fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    fail_open(path, std::string("cannot size the new file: ") + std::strerror(err), err);
  }
  // The new name must survive a crash too.
  std::string dir = std::filesystem::path(path).parent_path().string();
  FdGuard dfd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) fsync(dfd.get());
  log_info("created sparse backing file " + path + " of " + conf::format_size(size));
}

}  // namespace

std::unique_ptr<BackingFile> BackingFile::open(const Config::Backing& backing,
                                               uint32_t logical_block_size, bool readonly) {
  const std::string& path = backing.path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) fail_open(path, std::strerror(errno), errno);
    if (readonly) fail_open(path, "does not exist (a read-only server does not create it)", ENOENT);
    if (backing.size == 0)
      fail_open(path, "does not exist, and backing.size is not set, so it cannot be created", ENOENT);
    create_sparse(path, backing.size);
  } else if (!S_ISREG(st.st_mode)) {
    fail_open(path, "is not a regular file");
  }

  int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  bool direct = backing.direct_io;
  FdGuard fd(::open(path.c_str(), flags | (direct ? O_DIRECT : 0)));
  if (fd.get() < 0 && direct && errno == EINVAL) {
    log_warning("backing.path: " + path +
                ": the filesystem refuses O_DIRECT; using buffered I/O (durability still "
                "comes from fdatasync)");
    direct = false;
    fd.reset(::open(path.c_str(), flags));
  }
  if (fd.get() < 0) fail_open(path, std::string("cannot open: ") + std::strerror(errno), errno);

  if (flock(fd.get(), (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      fail_open(path, readonly ? "is in use by a read-write server (it holds a lock on it)"
                               : "is in use by another process (it holds a lock on it)",
                EBUSY);
    fail_open(path, std::string("cannot lock: ") + std::strerror(errno), errno);
  }

  if (fstat(fd.get(), &st) != 0) fail_open(path, std::strerror(errno), errno);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  const SizePlan plan = plan_backing_size(size, backing, logical_block_size, readonly, "file");
  if (!plan.problem.empty()) fail_open(path, plan.problem);
  if (plan.resize) {
    if (ftruncate(fd.get(), static_cast<off_t>(plan.serve)) != 0 || fsync(fd.get()) != 0)
      fail_open(path, std::string("cannot resize: ") + std::strerror(errno), errno);
    log_info("resized backing file " + path + " from " + conf::format_size(size) + " to " +
             conf::format_size(plan.serve));
    size = plan.serve;
  }

  return std::make_unique<BackingFile>(OpenedBy{}, path, fd.release(), size, direct, readonly);
}

BackingFile::BackingFile(OpenedBy, std::string path, int fd, uint64_t size, bool direct_io, bool readonly)
    : path_(std::move(path)), description_("backing file " + path_), fd_(fd), size_(size), direct_io_(direct_io), readonly_(readonly),
      storage_(probe_storage(fd)) {
  struct statx stx {};
  if (statx(fd_, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &stx) == 0) {
    inode_ = stx.stx_ino;
    if (stx.stx_mask & STATX_BTIME)
      birth_time_ns_ = uint64_t(stx.stx_btime.tv_sec) * 1000000000u + stx.stx_btime.tv_nsec;
  }
  if (direct_io_) {
    // Without STATX_DIOALIGN (older kernels) fall back to the device's logical block
    // size, then to 4096, which every Linux block device accepts.
    uint32_t off = storage_.dio_offset_align ? storage_.dio_offset_align
                   : storage_.logical_block_size ? storage_.logical_block_size
                                                 : 4096;
    uint32_t mem = storage_.dio_mem_align ? storage_.dio_mem_align : 4096;
    io_align_ = std::max<uint32_t>(off, 1);
    mem_align_ = std::max<uint32_t>(mem, 1);
  } else {
    io_align_ = 1;
    mem_align_ = 1;
  }
  log_debug("backing file " + path_ + ": size=" + std::to_string(size_) +
            " direct_io=" + (direct_io_ ? "yes" : "no") + " io_align=" + std::to_string(io_align_) +
            " mem_align=" + std::to_string(mem_align_) +
            " physical_block_size=" + std::to_string(storage_.physical_block_size) +
            " atomic_write_unit_max=" + std::to_string(storage_.atomic_write_unit_max));
}

BackingFile::~BackingFile() { ::close(fd_); }

void BackingFile::refuse_if_readonly(const char* what) const {
  if (readonly_) throw IoError(EROFS, std::string(what) + " of " + path_ + ": the device is read-only");
}

void BackingFile::check_range(uint64_t offset, uint64_t length, const char* what) const {
  if (offset > size_ || length > size_ - offset)
    throw IoError(EINVAL, std::string(what) + " beyond the end of the backing file: offset " +
                              std::to_string(offset) + " length " + std::to_string(length) +
                              ", size " + std::to_string(size_));
  if (offset % io_align_ != 0 || length % io_align_ != 0)
    throw IoError(EINVAL, std::string(what) + " not aligned to " + std::to_string(io_align_) +
                              ": offset " + std::to_string(offset) + " length " +
                              std::to_string(length));
}

// One aio op, resubmitting the rest after a short transfer; a transfer that makes no
// progress is an I/O error (the file shrank under us, or the device gave up).
void BackingFile::transfer(bool is_write, uint64_t offset, std::byte* buf, uint64_t length, int rw_flags) {
  while (length > 0) {
    AioOp op{is_write ? AioOp::Kind::write : AioOp::Kind::read, fd_, buf, length, offset};
    op.rw_flags = rw_flags;
    aio_submit_and_wait({&op, 1});
    if (op.result < 0)
      throw IoError::from_errno(static_cast<int>(-op.result),
                                std::string(is_write ? "write" : "read") + " of backing file " +
                                    path_ + " at " + std::to_string(offset));
    if (op.result == 0)
      throw IoError(EIO, std::string(is_write ? "write" : "read") + " of backing file " + path_ +
                             " at " + std::to_string(offset) + " made no progress");
    auto n = static_cast<uint64_t>(op.result);
    offset += n;
    buf += n;
    length -= n;
  }
}

void BackingFile::read(uint64_t offset, std::span<std::byte> dst) {
  check_range(offset, dst.size(), "read");
  if (reinterpret_cast<uintptr_t>(dst.data()) % mem_align_ == 0) {
    transfer(false, offset, dst.data(), dst.size());
    return;
  }
  BouncePool::Lease bounce_buffer = BouncePool::instance().take(std::min<uint64_t>(dst.size(), kMaxBounce));
  for (uint64_t done = 0; done < dst.size();) {
    uint64_t n = std::min<uint64_t>(dst.size() - done, kMaxBounce);
    transfer(false, offset + done, bounce_buffer.data(), n);
    std::memcpy(dst.data() + done, bounce_buffer.data(), n);
    done += n;
  }
}

void BackingFile::write(uint64_t offset, std::span<const std::byte> src) { write_flags(offset, src, 0); }

void BackingFile::write_flags(uint64_t offset, std::span<const std::byte> src, int rw_flags) {
  refuse_if_readonly("write");
  check_range(offset, src.size(), "write");
  if (reinterpret_cast<uintptr_t>(src.data()) % mem_align_ == 0) {
    // io_prep_pwrite takes a non-const pointer but only reads through it.
    transfer(true, offset, const_cast<std::byte*>(src.data()), src.size(), rw_flags);
    return;
  }
  BouncePool::Lease bounce_buffer = BouncePool::instance().take(std::min<uint64_t>(src.size(), kMaxBounce));
  for (uint64_t done = 0; done < src.size();) {
    uint64_t n = std::min<uint64_t>(src.size() - done, kMaxBounce);
    std::memcpy(bounce_buffer.data(), src.data() + done, n);
    transfer(true, offset + done, bounce_buffer.data(), n, rw_flags);
    done += n;
  }
}

void BackingFile::write_batch(std::span<WriteRequest> writes) {
  refuse_if_readonly("write");
  std::vector<AioOp> ops;
  std::vector<size_t> op_write;  // the write each aio op carries
  std::vector<uint64_t> done(writes.size(), 0);
  std::vector<BouncePool::Lease> bounces;  // live until the batch completes
  for (size_t k = 0; k < writes.size(); ++k) {
    WriteRequest& w = writes[k];
    try {
      check_range(w.offset, w.data.size(), "write");
    } catch (const IoError& e) {
      w.error = e.err();
      w.message = e.what();
      continue;
    }
    if (w.data.empty()) continue;
    std::byte* p = const_cast<std::byte*>(w.data.data());  // io_prep_pwrite only reads it
    if (reinterpret_cast<uintptr_t>(p) % mem_align_ != 0) {
      // Misaligned memory is bounced through a pooled buffer into the same batch (the
      // largest are left for write() below, which bounces them in pieces).
      if (w.data.size() > kMaxBounce) continue;
      bounces.push_back(BouncePool::instance().take(w.data.size()));
      std::memcpy(bounces.back().data(), w.data.data(), w.data.size());
      p = bounces.back().data();
    }
    ops.push_back({AioOp::Kind::write, fd_, p, w.data.size(), w.offset});
    ops.back().rw_flags = w.durable ? RWF_DSYNC : 0;
    op_write.push_back(k);
  }
  if (!ops.empty()) aio_submit_and_wait(ops);
  for (size_t j = 0; j < ops.size(); ++j) {
    WriteRequest& w = writes[op_write[j]];
    if (ops[j].result >= 0) {
      done[op_write[j]] = static_cast<uint64_t>(ops[j].result);
      continue;
    }
    w.error = static_cast<int>(-ops[j].result);
    w.message = "write of backing file " + path_ + " at " + std::to_string(w.offset) + ": " +
                std::strerror(w.error);
  }
  // The rest of short transfers, and the largest misaligned writes, one by one.
  for (size_t k = 0; k < writes.size(); ++k) {
    WriteRequest& w = writes[k];
    if (w.error || done[k] == w.data.size()) continue;
    try {
      write_flags(w.offset + done[k], w.data.subspan(done[k]), w.durable ? RWF_DSYNC : 0);
    } catch (const IoError& e) {
      w.error = e.err();
      w.message = e.what();
    }
  }
}

bool BackingFile::supports_atomic_write(uint64_t offset, uint64_t length) const {
  const uint64_t min = storage_.atomic_write_unit_min, max = storage_.atomic_write_unit_max;
  return direct_io_ && max != 0 && length >= min && length <= max && conf::is_power_of_two(length) &&
         offset % length == 0 && offset + length <= size_;
}

void BackingFile::write_atomic(uint64_t offset, std::span<const std::byte> src) {
  refuse_if_readonly("atomic write");
  if (!supports_atomic_write(offset, src.size())) throw_atomic_unsupported();
  constexpr int kRwfAtomic = 0x00000040;  // RWF_ATOMIC, Linux 6.11 (not in Debian 12's headers)
  const std::byte* p = src.data();
  BouncePool::Lease bounce_buffer;
  if (reinterpret_cast<uintptr_t>(p) % mem_align_ != 0) {
    bounce_buffer = BouncePool::instance().take(src.size());
    std::memcpy(bounce_buffer.data(), src.data(), src.size());
    p = bounce_buffer.data();
  }
  iovec iov{const_cast<std::byte*>(p), src.size()};
  ssize_t n;
  do {
    n = pwritev2(fd_, &iov, 1, static_cast<off_t>(offset), kRwfAtomic);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw IoError::from_errno(errno, "RWF_ATOMIC write of " + path_ + " at " + std::to_string(offset));
  if (static_cast<size_t>(n) != src.size())
    throw IoError(EIO, "RWF_ATOMIC write of " + path_ + " was short");
}

void BackingFile::write_zero_buffers(uint64_t offset, uint64_t length) {
  // Only reached for io_align-aligned ranges (see write_zeroes).
  static const AlignedBuffer zeroes(1 << 20);
  while (length > 0) {
    uint64_t n = std::min<uint64_t>(length, zeroes.size());
    transfer(true, offset, const_cast<std::byte*>(zeroes.data()), n);
    offset += n;
    length -= n;
  }
}

void BackingFile::write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) {
  refuse_if_readonly("zero");
  if (offset > size_ || length > size_ - offset)
    throw IoError(EINVAL, "zero beyond the end of the backing file");
  if (length == 0) return;
  const auto off = static_cast<off_t>(offset);
  const auto len = static_cast<off_t>(length);
  if (options.may_punch) {
    if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
      throw IoError::from_errno(errno, "punching a hole in " + path_);
  }
  if (fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return;
  if (errno != EOPNOTSUPP && errno != ENOSYS)
    throw IoError::from_errno(errno, "zeroing a range of " + path_);
  if (options.fast_only)
    throw IoError(ENOTSUP, "fast zero unsupported: the filesystem of " + path_ +
                               " cannot zero a range without writing it");
  if (offset % io_align_ != 0 || length % io_align_ != 0)
    throw IoError(EINVAL, "zero of an unaligned range needs a filesystem that supports "
                          "FALLOC_FL_ZERO_RANGE");
  write_zero_buffers(offset, length);
}

void BackingFile::sync() {
  if (readonly_) return;  // nothing was written through this descriptor: already durable
  if (fdatasync(fd_) != 0) throw IoError::from_errno(errno, "fdatasync of " + path_);
}

std::vector<Extent> BackingFile::extents(uint64_t offset, uint64_t length) {
  if (offset > size_ || length > size_ - offset)
    throw IoError(EINVAL, "extents beyond the end of the backing file");
  std::vector<Extent> out;
  const uint64_t end = offset + length;
  uint64_t pos = offset;
  auto add = [&](uint64_t from, uint64_t to, bool data) {
    if (to <= from) return;
    if (!out.empty() && out.back().data == data) out.back().length += to - from;
    else out.push_back({from, to - from, data});
  };
  while (pos < end) {
    off_t data = lseek(fd_, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {  // no data after pos: a hole to the end
        add(pos, end, false);
        break;
      }
      if (errno == EINVAL || errno == EOPNOTSUPP) {  // no SEEK_DATA: report all as data
        add(pos, end, true);
        break;
      }
      throw IoError::from_errno(errno, "SEEK_DATA on " + path_);
    }
    uint64_t data_start = std::min<uint64_t>(static_cast<uint64_t>(data), end);
    add(pos, data_start, false);
    if (data_start >= end) break;
    off_t hole = lseek(fd_, data, SEEK_HOLE);
    if (hole < 0) throw IoError::from_errno(errno, "SEEK_HOLE on " + path_);
    uint64_t data_end = std::min<uint64_t>(static_cast<uint64_t>(hole), end);
    add(data_start, data_end, true);
    pos = data_end;
  }
  return out;
}

uint64_t BackingFile::size_on_disk() const {
  struct stat st {};
  if (fstat(fd_, &st) != 0) throw IoError::from_errno(errno, "fstat of " + path_);
  return static_cast<uint64_t>(st.st_size);
}

uint64_t BackingFile::native_atomic_unit() const {
  const uint32_t pbs = storage_.physical_block_size;
  return pbs >= 512 && conf::is_power_of_two(pbs) ? pbs : 0;
}

std::unique_ptr<JournalFile> BackingFile::open_journal(const Config::Journal& journal) {
  return PosixJournalFile::open(journal.path);
}

std::unique_ptr<JournalFile> BackingFile::open_journal_readonly(const Config::Journal& journal) {
  return PosixJournalFile::open_readonly(journal.path);
}

Extent BackingFile::allocation_at(uint64_t offset, uint64_t limit) {
  if (offset >= limit || limit > size_)
    throw IoError(EINVAL, "allocation probe beyond the end of the backing file");
  const off_t data = lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) {
    if (errno == ENXIO) return {offset, limit - offset, false};  // a hole to the end
    if (errno == EINVAL || errno == EOPNOTSUPP) return {offset, limit - offset, true};
    throw IoError::from_errno(errno, "SEEK_DATA on " + path_);
  }
  if (static_cast<uint64_t>(data) > offset)
    return {offset, std::min<uint64_t>(static_cast<uint64_t>(data), limit) - offset, false};
  const off_t hole = lseek(fd_, static_cast<off_t>(offset), SEEK_HOLE);
  if (hole < 0) throw IoError::from_errno(errno, "SEEK_HOLE on " + path_);
  return {offset, std::min<uint64_t>(static_cast<uint64_t>(hole), limit) - offset, true};
}

}  // namespace untorn
