#include "device/rados_journal_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "util/io_error.h"

namespace untorn {
namespace {

// One read of a RADOS object returns at most this much (the OSD's own limits are larger).
constexpr size_t kReadChunk = size_t{4} << 20;

// Owns a rados write op.
struct WriteOp {
  rados_write_op_t op = rados_create_write_op();
  ~WriteOp() {
    if (op) rados_release_write_op(op);
  }
};

}  // namespace

std::unique_ptr<RadosJournalFile> RadosJournalFile::open(std::shared_ptr<RadosCluster> cluster,
                                                         std::string object) {
  auto out = std::make_unique<RadosJournalFile>(OpenedBy{}, std::move(cluster), std::move(object), false);
  (void)out->size();  // reachable, readable: fail now, naming it, not at the first record
  return out;
}

std::unique_ptr<RadosJournalFile> RadosJournalFile::open_readonly(std::shared_ptr<RadosCluster> cluster,
                                                                  std::string object) {
  uint64_t size = 0;
  time_t mtime = 0;
  int r = rados_stat(cluster->ioctx(), object.c_str(), &size, &mtime);
  if (r == -ENOENT) return nullptr;
  auto out = std::make_unique<RadosJournalFile>(OpenedBy{}, std::move(cluster), std::move(object), true);
  if (r < 0) out->fail(r, "stat");
  return out;
}

RadosJournalFile::RadosJournalFile(OpenedBy, std::shared_ptr<RadosCluster> cluster, std::string object,
                                   bool readonly)
    : cluster_(std::move(cluster)),
      object_(std::move(object)),
      name_("RADOS object " + cluster_->pool() + "/" + object_),
      readonly_(readonly) {}

std::string RadosJournalFile::set_aside_advice() const {
  return "remove it with `rados " + cluster_->cli_options() + " -p " + cluster_->pool() + " rm " + object_ + "`";
}

void RadosJournalFile::fail(int ret, const char* what) const {
  throw IoError(ret == -ENOSPC || ret == -EDQUOT ? ENOSPC : EIO,
                std::string(what) + " of journal " + name_ + ": " + ceph_error_text(ret));
}

void RadosJournalFile::refuse_if_readonly() const {
  if (readonly_) throw IoError(EBADF, "write of journal " + name_ + ", opened read-only");
}

uint64_t RadosJournalFile::size() {
  uint64_t size = 0;
  time_t mtime = 0;
  int r = rados_stat(cluster_->ioctx(), object_.c_str(), &size, &mtime);
  if (r == -ENOENT) return 0;
  if (r < 0) fail(r, "stat");
  return size;
}

size_t RadosJournalFile::read(uint64_t offset, std::span<std::byte> dst) {
  size_t done = 0;
  while (done < dst.size()) {
    const size_t want = std::min(kReadChunk, dst.size() - done);
    int r = rados_read(cluster_->ioctx(), object_.c_str(), reinterpret_cast<char*>(dst.data() + done), want,
                       offset + done);
    if (r == -ENOENT) break;
    if (r < 0) fail(r, "read");
    done += static_cast<size_t>(r);
    if (static_cast<size_t>(r) < want) break;  // end of the object
  }
  return done;
}

void RadosJournalFile::write(uint64_t offset, std::span<const std::byte> src) {
  refuse_if_readonly();
  int r = rados_write(cluster_->ioctx(), object_.c_str(), reinterpret_cast<const char*>(src.data()), src.size(),
                      offset);
  if (r < 0) fail(r, "write");
}

void RadosJournalFile::write_gather(uint64_t offset, std::span<const std::span<const std::byte>> pieces) {
  refuse_if_readonly();
  WriteOp op;
  if (!op.op) throw IoError(ENOMEM, "write of journal " + name_ + ": cannot make a RADOS write op");
  for (const auto& piece : pieces) {
    if (piece.empty()) continue;
    rados_write_op_write(op.op, reinterpret_cast<const char*>(piece.data()), piece.size(), offset);
    offset += piece.size();
  }
  int r = rados_write_op_operate(op.op, cluster_->ioctx(), object_.c_str(), nullptr, 0);
  if (r < 0) fail(r, "write");
}

void RadosJournalFile::truncate(uint64_t size) {
  refuse_if_readonly();
  int r = rados_trunc(cluster_->ioctx(), object_.c_str(), size);
  if (r < 0) fail(r, "truncate");
}

}  // namespace untorn
