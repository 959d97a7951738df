// device/journal_file.h — the file the journal lives in, behind an interface.
//
// Like BlockDevice, this is the seam where the crash harness records every write and sync
// (tests/support/recording_*.h) and where tests inject faults. PosixJournalFile is the
// real one: a buffered file descriptor (the journal is written append-only in packed
// records and made durable with fdatasync), locked exclusively for its whole life (shared,
// when opened read-only).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace untorn {

class JournalFile {
 public:
  virtual ~JournalFile() = default;
  virtual uint64_t size() = 0;
  // Reads up to dst.size() bytes; returns fewer only at end of file.
  virtual size_t read(uint64_t offset, std::span<std::byte> dst) = 0;
  virtual void write(uint64_t offset, std::span<const std::byte> src) = 0;
  // Writes `pieces` one after another from `offset`, as if joined (no copy into one
  // buffer). Not atomic, like write(). The default writes them one by one.
  virtual void write_gather(uint64_t offset, std::span<const std::span<const std::byte>> pieces);
  virtual void truncate(uint64_t size) = 0;
  virtual void sync() = 0;
  // st_ino / st_dev of the backing file are not the journal's business; this names the
  // file in messages.
  virtual const std::string& name() const = 0;
  // How messages name it before a colon: the config key that places it and the name.
  virtual std::string config_name() const { return "journal.path: " + name(); }
  // What a user does to start without this journal (after deciding its records are not
  // needed): the advice ending a refusal to replay or overwrite it.
  virtual std::string set_aside_advice() const { return "move the journal away"; }
};

class PosixJournalFile final : public JournalFile {
 public:
  // Opens or creates `path`. Throws IoError naming journal.path on failure.
  static std::unique_ptr<PosixJournalFile> open(const std::string& path);
  // Opens `path` read-only with a shared lock (a read-only server only looks); nullptr
  // when there is no such file. Writes through it fail with EBADF.
  static std::unique_ptr<PosixJournalFile> open_readonly(const std::string& path);
  ~PosixJournalFile() override;
  PosixJournalFile(const PosixJournalFile&) = delete;
  PosixJournalFile& operator=(const PosixJournalFile&) = delete;

  uint64_t size() override;
  size_t read(uint64_t offset, std::span<std::byte> dst) override;
  void write(uint64_t offset, std::span<const std::byte> src) override;
  void write_gather(uint64_t offset, std::span<const std::span<const std::byte>> pieces) override;
  void truncate(uint64_t size) override;
  void sync() override;
  const std::string& name() const override { return path_; }

 private:
  struct OpenedBy {};

 public:
  PosixJournalFile(OpenedBy, std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

 private:
  std::string path_;
  int fd_;
};

}  // namespace untorn
