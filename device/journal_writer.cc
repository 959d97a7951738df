#include "device/journal_writer.h"

#include <array>

#include "util/io_error.h"

namespace untorn {

namespace {

void put_header(JournalFile& file, const journal::Header& header) {
  std::array<std::byte, journal::kHeaderSize> block;
  journal::encode_header(header, block);
  file.write(0, block);
}

}  // namespace

void write_journal_header(JournalFile& file, const journal::Header& header) {
  put_header(file, header);
  file.truncate(journal::kHeaderSize);
  file.sync();
}

void rewrite_journal_header(JournalFile& file, const journal::Header& header) {
  put_header(file, header);
  file.sync();
}

JournalWriter::JournalWriter(JournalFile& file, journal::Header header)
    : file_(file), header_(header) {}

void JournalWriter::write_batch(std::vector<Pending*>& batch, uint64_t at) {
  // One gathered append: each record's header, then its payload straight from the caller
  // (no copy of the data into one buffer).
  std::vector<std::array<std::byte, journal::kRecordHeaderSize>> headers(batch.size());
  std::vector<std::span<const std::byte>> pieces;
  pieces.reserve(2 * batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    journal::encode_record_header(batch[i]->header, batch[i]->data, headers[i]);
    pieces.emplace_back(headers[i]);
    if (!batch[i]->data.empty()) pieces.push_back(batch[i]->data);
  }
  file_.write_gather(at, pieces);
  file_.sync();
}

void JournalWriter::commit(journal::RecordKind kind, uint64_t offset, uint32_t length,
                           std::span<const std::byte> data) {
  Pending me;
  me.header = {header_.epoch, 0, offset, length, kind};
  me.data = data;
  commit_pending({&me, 1});
}

void JournalWriter::commit_batch(std::span<const Record> records) {
  if (records.empty()) return;
  std::vector<Pending> mine(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    mine[i].header = {0, 0, records[i].offset, records[i].length, records[i].kind};
    mine[i].data = records[i].data;
  }
  commit_pending(mine);
}

void JournalWriter::commit_pending(std::span<Pending> mine) {
  std::unique_lock lk(mutex_);
  for (Pending& p : mine) queue_.push_back(&p);
  auto all_done = [&] {
    for (const Pending& p : mine)
      if (!p.done) return false;
    return true;
  };
  while (!all_done()) {
    if (leader_active_) {
      done_.wait(lk);
      continue;
    }
    // Lead: take everything queued, number it, write it as one append + one sync.
    leader_active_ = true;
    std::vector<Pending*> batch;
    batch.swap(queue_);
    const uint64_t at = tail_;
    for (Pending* p : batch) {
      p->header.epoch = header_.epoch;
      p->header.sequence = next_sequence_++;
      tail_ += journal::kRecordHeaderSize + p->data.size();
    }
    const bool repair_header = header_suspect_;
    lk.unlock();
    int error = 0;
    std::string message;
    try {
      // A reset that failed may have left a torn header on disk: no record is appended
      // behind it until the current header is whole and durable again.
      if (repair_header) rewrite_journal_header(file_, header_);
      write_batch(batch, at);
    } catch (const IoError& e) {
      error = e.err();
      message = e.what();
    }
    lk.lock();
    if (error) {  // rewind: the next batch overwrites the failed one, with higher numbers
      tail_ = at;
    } else {
      if (repair_header) header_suspect_ = false;
      ++commits_;
      records_ += batch.size();
    }
    for (Pending* p : batch) {
      p->done = true;
      p->error = error;
      p->message = message;
    }
    leader_active_ = false;
    done_.notify_all();
  }
  for (const Pending& p : mine)
    if (p.error) throw IoError(p.error, p.message);
}

void JournalWriter::reset() {
  std::lock_guard lk(mutex_);
  journal::Header next = header_;
  ++next.epoch;
  // The space stays: records are overwritten in place from the start (a truncate here made
  // every append after a checkpoint allocate blocks again, so each journal sync was also a
  // filesystem metadata commit). What is left of the old epoch is never replayed: the
  // reader stops at the first record whose epoch is not the header's.
  try {
    rewrite_journal_header(file_, next);
  } catch (...) {
    // The header on disk may be torn now. Records of the current epoch are not needed
    // any more (the device was synced before the reset), but new ones will be: the next
    // commit first rewrites the current header whole (test: the fault soak).
    header_suspect_ = true;
    throw;
  }
  header_suspect_ = false;
  header_ = next;
  tail_ = journal::kHeaderSize;
  next_sequence_ = 1;
}

uint64_t JournalWriter::record_bytes() const {
  std::lock_guard lk(mutex_);
  return tail_ - journal::kHeaderSize;
}

uint64_t JournalWriter::commits() const {
  std::lock_guard lk(mutex_);
  return commits_;
}

uint64_t JournalWriter::records() const {
  std::lock_guard lk(mutex_);
  return records_;
}

}  // namespace untorn
