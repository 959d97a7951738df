// device/rados_journal_file.h — the journal of an RBD-backed device: one RADOS object.
//
// The object ("untorn_journal.<image id>") lives in the image's pool, so whichever host
// opens the image next finds and replays it. Each write (and each write_gather, whatever
// its pieces) is one RADOS write op, which the OSD applies whole or not at all: a journal
// record is never torn. A write op returns once the OSDs have it durably, so sync() has
// nothing to do. No lock of its own: only the holder of the image's exclusive lock
// (RbdImage) opens it read-write.
#pragma once

#include <memory>
#include <string>

#include "device/journal_file.h"
#include "device/rados_cluster.h"

namespace untorn {

class RadosJournalFile final : public JournalFile {
 public:
  static std::unique_ptr<RadosJournalFile> open(std::shared_ptr<RadosCluster> cluster, std::string object);
  // nullptr when the object does not exist.
  static std::unique_ptr<RadosJournalFile> open_readonly(std::shared_ptr<RadosCluster> cluster,
                                                         std::string object);

  uint64_t size() override;
  size_t read(uint64_t offset, std::span<std::byte> dst) override;
  void write(uint64_t offset, std::span<const std::byte> src) override;
  void write_gather(uint64_t offset, std::span<const std::span<const std::byte>> pieces) override;
  void truncate(uint64_t size) override;
  void sync() override {}
  const std::string& name() const override { return name_; }
  std::string config_name() const override { return "journal (beside backing.rbd) " + name_; }
  std::string set_aside_advice() const override;

 private:
  struct OpenedBy {};

 public:
  RadosJournalFile(OpenedBy, std::shared_ptr<RadosCluster> cluster, std::string object, bool readonly);

 private:
  [[noreturn]] void fail(int ret, const char* what) const;
  void refuse_if_readonly() const;

  std::shared_ptr<RadosCluster> cluster_;
  std::string object_;
  std::string name_;  // "RADOS object pool/object"
  bool readonly_;
};

}  // namespace untorn
