// device/journal_writer.h — appends records to the journal, many writers per fdatasync.
//
// Holds a reference to the JournalFile (which must outlive it). commit() returns only
// when the record is durable; concurrent commits are gathered by whichever caller finds
// no commit running (the leader), written as one append and made durable by one
// fdatasync (group commit). reset() starts a new epoch; the caller must make sure no
// commit is running and that every committed record is durable in place first
// (AtomicWriter's checkpoint does both).
// On a failed append or sync every record of that batch fails with the error, and the
// tail is rewound so the next batch overwrites the failed bytes. A failed reset leaves
// the old epoch current; its header is rewritten whole before the next record.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "device/journal_file.h"
#include "device/journal_format.h"

namespace untorn {

class JournalWriter {
 public:
  // `header` is what recovery left (its epoch is current); records go from kHeaderSize.
  JournalWriter(JournalFile& file, journal::Header header);

  // Appends one record (data: payload = `data`; zero: `data` empty, `length` bytes).
  void commit(journal::RecordKind kind, uint64_t offset, uint32_t length,
              std::span<const std::byte> data);

  // One record of commit_batch.
  struct Record {
    journal::RecordKind kind;
    uint64_t offset;
    uint32_t length;
    std::span<const std::byte> data;
  };
  // Appends all of `records` (in one append and one fdatasync when no other batch is
  // being written); returns when all are durable. Throws if any failed (then none of
  // them is durable: a failed batch is rewound whole).
  void commit_batch(std::span<const Record> records);

  // New epoch: header rewritten and made durable; the file keeps its length and the next
  // records overwrite the old epoch's from the start.
  void reset();

  uint64_t record_bytes() const;   // bytes of records in the current epoch
  uint64_t commits() const;        // fdatasyncs done for records (for tests and stats)
  uint64_t records() const;

 private:
  struct Pending {
    journal::RecordHeader header{};
    std::span<const std::byte> data;
    bool done = false;
    int error = 0;
    std::string message;
  };

  void write_batch(std::vector<Pending*>& batch, uint64_t at);
  void commit_pending(std::span<Pending> mine);

  JournalFile& file_;
  journal::Header header_;
  mutable std::mutex mutex_;
  std::condition_variable done_;
  std::vector<Pending*> queue_;
  bool leader_active_ = false;
  bool header_suspect_ = false;  // a reset failed: rewrite the header before any record
  uint64_t tail_ = journal::kHeaderSize;
  uint64_t next_sequence_ = 1;
  uint64_t commits_ = 0;
  uint64_t records_ = 0;
};

// Writes a fresh header for `header` and truncates after it, durably (a new journal, or
// one recovery has just replayed).
void write_journal_header(JournalFile& file, const journal::Header& header);
// Overwrites the header with `header` durably and keeps the file's length, so the records'
// blocks are reused (a checkpoint's reset).
void rewrite_journal_header(JournalFile& file, const journal::Header& header);

}  // namespace untorn
