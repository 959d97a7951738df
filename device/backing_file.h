// device/backing_file.h — the raw backing file, the real BlockDevice.
//
// Owns: the file descriptor (O_DIRECT where the filesystem allows it) and an exclusive
// flock on it for its whole life, so two servers never share one backing file (read-only
// servers take a shared lock: several may read one file no read-write server holds).
// open() creates the file sparse when missing, checks or (when asked) changes its size,
// and refuses anything that is not a regular file whose size is a multiple of L.
// Reads and writes go through the calling thread's libaio queue; memory that does not
// meet the O_DIRECT alignment is bounced through buffers of the process's BouncePool.
#pragma once

#include <memory>
#include <string>

#include "conf/config.h"
#include "device/backing.h"
#include "device/block_device.h"
#include "device/journal_format.h"

namespace untorn {

class BackingFile final : public Backing {
 public:
  // Opens (or creates) the backing file described by `backing`; `logical_block_size` is L.
  // Throws IoError with a message naming the file and the config key to change.
  // `readonly`: O_RDONLY and a shared lock; never creates or resizes the file, and every
  // write and zero fails with EROFS; sync succeeds at once (nothing to make durable).
  static std::unique_ptr<BackingFile> open(const Config::Backing& backing,
                                           uint32_t logical_block_size, bool readonly = false);
  ~BackingFile() override;
  BackingFile(const BackingFile&) = delete;
  BackingFile& operator=(const BackingFile&) = delete;

  uint64_t size() const override { return size_; }
  uint32_t io_align() const override { return io_align_; }
  const StorageInfo& storage() const override { return storage_; }
  bool direct_io() const { return direct_io_; }
  bool readonly() const { return readonly_; }
  uint64_t inode() const { return inode_; }
  // statx birth time in ns since the epoch; 0 where the filesystem does not keep one.
  uint64_t birth_time_ns() const { return birth_time_ns_; }
  const std::string& path() const { return path_; }
  // The file's size now (fstat): differs from size() only if something else resized it.
  uint64_t size_on_disk() const override;
  const std::string& description() const override { return description_; }
  // Size, inode, birth time and L, all of which survive a reboot.
  journal::Identity identity(uint32_t logical_block_size) const override {
    return {size_, inode_, birth_time_ns_, logical_block_size};
  }
  // The physical block size of the device under the file (an assumption about the
  // storage, documented in README), 0 where it cannot be read.
  uint64_t native_atomic_unit() const override;
  // journal.path (PosixJournalFile).
  std::unique_ptr<JournalFile> open_journal(const Config::Journal& journal) override;
  std::unique_ptr<JournalFile> open_journal_readonly(const Config::Journal& journal) override;

  void read(uint64_t offset, std::span<std::byte> dst) override;
  void write(uint64_t offset, std::span<const std::byte> src) override;
  // One libaio batch (misaligned memory bounced into it); short transfers and misaligned
  // writes above 8 MiB are finished one by one.
  void write_batch(std::span<WriteRequest> writes) override;
  // RWF_DSYNC on the O_DIRECT descriptor: a durable write is one FUA write (plus the
  // metadata it needs), and its failure touches no page cache (see BlockDevice).
  bool supports_durable_writes() const override { return direct_io_ && !readonly_; }
  // RWF_ATOMIC where statx reports it: power-of-two length within the reported unit
  // min/max, naturally aligned, on the O_DIRECT descriptor.
  bool supports_atomic_write(uint64_t offset, uint64_t length) const override;
  void write_atomic(uint64_t offset, std::span<const std::byte> src) override;
  void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) override;
  void sync() override;
  std::vector<Extent> extents(uint64_t offset, uint64_t length) override;
  Extent allocation_at(uint64_t offset, uint64_t limit) override;

 private:
  struct OpenedBy {};  // only open() may construct one
 public:
  BackingFile(OpenedBy, std::string path, int fd, uint64_t size, bool direct_io, bool readonly);

 private:
  void check_range(uint64_t offset, uint64_t length, const char* what) const;
  void refuse_if_readonly(const char* what) const;
  void transfer(bool is_write, uint64_t offset, std::byte* buf, uint64_t length, int rw_flags = 0);
  void write_flags(uint64_t offset, std::span<const std::byte> src, int rw_flags);
  void write_zero_buffers(uint64_t offset, uint64_t length);

  std::string path_;
  std::string description_;
  int fd_;
  uint64_t size_;
  bool direct_io_;
  bool readonly_;
  StorageInfo storage_;
  uint32_t io_align_;
  uint32_t mem_align_;
  uint64_t inode_ = 0;
  uint64_t birth_time_ns_ = 0;
};

}  // namespace untorn
