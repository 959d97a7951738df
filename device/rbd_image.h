// device/rbd_image.h — an RBD image through librbd, the Backing for backing.rbd.
//
// Owns the rbd_image_t (closed in the destructor) and, unless read-only, the image's
// exclusive lock for its whole life (rbd_lock_acquire: librbd's automatic lock hand-over
// is off, so a second client, such as a second untorn server, cannot take the image while
// this one serves it; once this client is dead, the next one breaks the lock and
// blocklists it). Holds the RadosCluster it was opened through.
// Atomicity: a write inside one RADOS object (obj_size, 4 MiB by default, naturally
// aligned) is one RADOS op, all or nothing; a write across an object boundary is two
// independent ops. So native_atomic_unit() is the object size (the stripe unit of an image
// striped over several objects), and the AtomicWriter sends
// atomic writes that cross an object boundary through the journal, which is a RADOS
// object in the same pool (RadosJournalFile), so any host can recover it.
// librbd's cache is off (RadosCluster; an image whose own or pool settings turn a client cache
// on is refused at open): a write that completes is on the OSDs, durable,
// so supports_durable_writes() holds for every write and sync() is rbd_flush.
// Ordering: RADOS may apply two overlapping writes in flight together out of order; the
// BlockDevice contract leaves ordering to the caller (RangeLock), and write_batch's
// writes are disjoint.
#pragma once

#include <rbd/librbd.h>

#include <memory>
#include <string>

#include "device/backing.h"
#include "device/rados_cluster.h"

namespace untorn {

class RbdImage final : public Backing {
 public:
  // Opens backing.rbd ("pool/image") through backing.ceph_conf as client.<ceph_id>,
  // checks or (with backing.resize) changes its size, and takes the exclusive lock unless
  // `readonly`. Throws IoError naming the config key to change.
  static std::unique_ptr<RbdImage> open(const Config::Backing& backing,
                                        uint32_t logical_block_size, bool readonly);
  ~RbdImage() override;
  RbdImage(const RbdImage&) = delete;
  RbdImage& operator=(const RbdImage&) = delete;

  uint64_t size() const override { return size_; }
  uint32_t io_align() const override { return 512; }
  const StorageInfo& storage() const override { return storage_; }
  uint64_t object_size() const { return object_size_; }
  const std::string& image_id() const { return image_id_; }

  void read(uint64_t offset, std::span<std::byte> dst) override;
  void write(uint64_t offset, std::span<const std::byte> src) override;
  // All submitted with rbd_aio_write, then waited for.
  void write_batch(std::span<WriteRequest> writes) override;
  bool supports_durable_writes() const override { return !readonly_; }
  // rbd_write_zeroes: may_punch lets it deallocate; without it the zeroes are written
  // (thick), which is not fast: fast_only then fails with ENOTSUP.
  void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions options) override;
  void sync() override;
  // From rbd_diff_iterate2 at whole-object granularity: an object that exists is data
  // (even where parts of it were never written), one that does not is a hole.
  std::vector<Extent> extents(uint64_t offset, uint64_t length) override;

  const std::string& description() const override { return description_; }
  uint64_t size_on_disk() const override;
  // Size, a hash of the image id (kept across renames), its creation time, and L.
  journal::Identity identity(uint32_t logical_block_size) const override;
  uint64_t native_atomic_unit() const override { return atomic_unit_; }
  // The RADOS object "untorn_journal.<image id>" in the image's pool.
  std::unique_ptr<JournalFile> open_journal(const Config::Journal& journal) override;
  std::unique_ptr<JournalFile> open_journal_readonly(const Config::Journal& journal) override;

 private:
  struct OpenedBy {};

 public:
  RbdImage(OpenedBy, std::shared_ptr<RadosCluster> cluster, rbd_image_t image, std::string name,
           bool readonly);

 private:
  void check_range(uint64_t offset, uint64_t length, const char* what) const;
  void refuse_if_readonly(const char* what) const;
  [[noreturn]] void fail(int ret, const std::string& what, uint64_t offset, uint64_t length) const;
  std::string journal_object() const { return "untorn_journal." + image_id_; }

  std::shared_ptr<RadosCluster> cluster_;
  rbd_image_t image_;
  std::string name_;          // pool/image
  std::string description_;   // "RBD image pool/image"
  bool readonly_;
  uint64_t size_ = 0;
  uint64_t object_size_ = 0;
  uint64_t atomic_unit_ = 0;  // the object size, or the stripe unit of a striped image
  std::string image_id_;
  uint64_t created_ns_ = 0;
  StorageInfo storage_;
};

}  // namespace untorn
