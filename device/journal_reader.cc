#include "device/journal_reader.h"

namespace untorn {

JournalReader::JournalReader(JournalFile& file, const journal::Header& header, uint64_t max_offset)
    : file_(file), header_(header), max_offset_(max_offset), file_size_(file.size()) {}

bool JournalReader::next(Record& out) {
  if (pos_ + journal::kRecordHeaderSize > file_size_) {
    stop_reason_ = pos_ == file_size_ ? "end of journal" : "torn record header at end of journal";
    return false;
  }
  std::array<std::byte, journal::kRecordHeaderSize> head;
  if (file_.read(pos_, head) != head.size()) {
    stop_reason_ = "short read";
    return false;
  }
  uint32_t crc = 0;
  journal::RecordHeader h;
  if (!journal::decode_record_header(head, h, crc)) {
    stop_reason_ = "bad record magic or kind";
    return false;
  }
  if (h.epoch != header_.epoch) {
    stop_reason_ = "record of an earlier epoch";
    return false;
  }
  // Sequences only grow within an epoch, and a failed append's numbers are never reused,
  // so what is left of a failed batch behind a later, shorter one (lower numbers) ends
  // the journal rather than being replayed after newer records.
  if (h.sequence < expected_sequence_) {
    stop_reason_ = "sequence not increasing";
    return false;
  }
  if (h.length == 0 || h.offset > max_offset_ || h.length > max_offset_ - h.offset) {
    stop_reason_ = "record out of the backing file's range";
    return false;
  }
  const uint64_t payload = h.payload_size();
  if (pos_ + journal::kRecordHeaderSize + payload > file_size_) {
    stop_reason_ = "torn record payload at end of journal";
    return false;
  }
  out.data.resize(payload);
  if (payload > 0 && file_.read(pos_ + journal::kRecordHeaderSize, out.data) != payload) {
    stop_reason_ = "short read";
    return false;
  }
  if (journal::record_crc(head, out.data) != crc) {
    stop_reason_ = "record checksum mismatch";
    return false;
  }
  out.header = h;
  pos_ += journal::kRecordHeaderSize + payload;
  expected_sequence_ = h.sequence + 1;
  return true;
}

}  // namespace untorn
