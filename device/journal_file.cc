#include "device/journal_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <vector>
#include <filesystem>

#include "util/io_error.h"

namespace untorn {

namespace {

// Opens `path` with `flags`, checks it is a regular file and takes `lock` (LOCK_EX or
// LOCK_SH) without waiting; returns the descriptor, or -1 for a missing file when
// `missing_ok`. `holder` names who holds a conflicting lock, for the message.
int open_locked(const std::string& path, int flags, int lock, bool missing_ok, const char* holder) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0 && missing_ok && errno == ENOENT) return -1;
  if (fd < 0) throw IoError::from_errno(errno, "journal.path: " + path + ": cannot open");
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(EINVAL, "journal.path: " + path + ": is not a regular file");
  }
  if (flock(fd, lock | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    throw IoError(err == EWOULDBLOCK ? EBUSY : err, "journal.path: " + path + ": is in use by " +
                                                        holder + " (it holds a lock on it)");
  }
  return fd;
}

}  // namespace

std::unique_ptr<PosixJournalFile> PosixJournalFile::open(const std::string& path) {
  const int fd = open_locked(path, O_RDWR | O_CREAT, LOCK_EX, false, "another process");
  // The journal's name must survive a crash like its contents.
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    ::close(dfd);
  }
  return std::make_unique<PosixJournalFile>(OpenedBy{}, path, fd);
}

std::unique_ptr<PosixJournalFile> PosixJournalFile::open_readonly(const std::string& path) {
  const int fd = open_locked(path, O_RDONLY, LOCK_SH, true, "a read-write server");
  if (fd < 0) return nullptr;
  return std::make_unique<PosixJournalFile>(OpenedBy{}, path, fd);
}

PosixJournalFile::~PosixJournalFile() { ::close(fd_); }

uint64_t PosixJournalFile::size() {
  struct stat st;
  if (fstat(fd_, &st) != 0) throw IoError::from_errno(errno, "stat of journal " + path_);
  return static_cast<uint64_t>(st.st_size);
}

size_t PosixJournalFile::read(uint64_t offset, std::span<std::byte> dst) {
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = pread(fd_, dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw IoError::from_errno(errno, "read of journal " + path_);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

void PosixJournalFile::write(uint64_t offset, std::span<const std::byte> src) {
  size_t done = 0;
  while (done < src.size()) {
    ssize_t n = pwrite(fd_, src.data() + done, src.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw IoError::from_errno(errno, "write of journal " + path_);
    done += static_cast<size_t>(n);
  }
}

void JournalFile::write_gather(uint64_t offset, std::span<const std::span<const std::byte>> pieces) {
  for (const auto& piece : pieces) {
    write(offset, piece);
    offset += piece.size();
  }
}

void PosixJournalFile::write_gather(uint64_t offset,
                                    std::span<const std::span<const std::byte>> pieces) {
  std::vector<iovec> iov;
  iov.reserve(pieces.size());
  for (const auto& piece : pieces)
    if (!piece.empty()) iov.push_back({const_cast<std::byte*>(piece.data()), piece.size()});
  size_t first = 0;  // iov[first..] is what is left to write
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = pwritev(fd_, iov.data() + first, count, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw IoError::from_errno(errno, "write of journal " + path_);
    offset += static_cast<uint64_t>(n);
    // Drop what was written; a short write leaves the rest of a piece in place.
    for (auto left = static_cast<size_t>(n); left > 0;) {
      const size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
}

void PosixJournalFile::truncate(uint64_t size) {
  if (ftruncate(fd_, static_cast<off_t>(size)) != 0)
    throw IoError::from_errno(errno, "truncate of journal " + path_);
}

void PosixJournalFile::sync() {
  if (fdatasync(fd_) != 0) throw IoError::from_errno(errno, "fdatasync of journal " + path_);
}

}  // namespace untorn
