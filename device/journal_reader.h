// device/journal_reader.h — reads the valid records of a journal, in order.
//
// Holds a reference to the JournalFile for its life. next() yields records while each is
// whole and belongs to the current epoch and sequence; it stops (returns false) at the
// first that is not, which is a torn tail left by a crash (doc/journal_format.md).
// `max_offset` bounds where a record may point (the backing size): one pointing past it
// ends the scan like any other corrupt record.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "device/journal_file.h"
#include "device/journal_format.h"

namespace untorn {

class JournalReader {
 public:
  JournalReader(JournalFile& file, const journal::Header& header, uint64_t max_offset);

  struct Record {
    journal::RecordHeader header;
    std::vector<std::byte> data;  // empty for zero records
  };
  bool next(Record& out);
  // Where the valid records end, and why the scan stopped (for the log).
  uint64_t end() const { return pos_; }
  const char* stop_reason() const { return stop_reason_; }

 private:
  JournalFile& file_;
  journal::Header header_;
  uint64_t max_offset_;
  uint64_t file_size_;
  uint64_t pos_ = journal::kHeaderSize;
  uint64_t expected_sequence_ = 1;
  const char* stop_reason_ = "";
};

}  // namespace untorn
