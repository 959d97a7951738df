#include "device/recovery.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "device/journal_reader.h"
#include "device/journal_writer.h"
#include "util/io_error.h"
#include "util/log.h"

namespace untorn {
namespace {

std::string describe(const journal::Identity& id) {
  return "size " + std::to_string(id.backing_size) + ", inode " + std::to_string(id.inode) +
         ", birth time " + (id.birth_time_ns ? std::to_string(id.birth_time_ns) + " ns" : "unknown");
}

}  // namespace

PendingRecords pending_journal_records(JournalFile& file, uint64_t device_size,
                                       const journal::Identity& identity) {
  PendingRecords pending;
  std::array<std::byte, journal::kHeaderSize> block{};
  if (file.size() == 0 || file.read(0, block) != block.size()) return pending;
  journal::Header header;
  if (!journal::decode_header(block, header)) return pending;
  pending.foreign = !journal::same_backing_file(header, identity);
  JournalReader reader(file, header, device_size);
  JournalReader::Record record;
  while (reader.next(record)) {
    ++pending.records;
    pending.bytes += record.header.length;
  }
  return pending;
}

RecoveryResult recover_journal(BlockDevice& device, JournalFile& file,
                               const journal::Identity& identity) {
  RecoveryResult result;
  const uint64_t size = file.size();
  std::array<std::byte, journal::kHeaderSize> block{};
  const size_t got = size == 0 ? 0 : file.read(0, block);
  journal::Header header;
  bool header_ok = got == block.size() && journal::decode_header(block, header);

  if (!header_ok) {
    // Our header is one sector of fields and zeroes after it. A header region that is all
    // zero in a file no longer than the header is our own initialisation torn by a crash;
    // anything else without our magic is somebody else's file.
    const bool all_zero = std::all_of(block.begin(), block.begin() + static_cast<long>(got),
                                      [](std::byte b) { return b == std::byte{0}; });
    const bool ours_torn = all_zero && size <= journal::kHeaderSize;
    if (!ours_torn && (got < 8 || std::memcmp(block.data(), journal::kHeaderMagic, 8) != 0))
      throw IoError(EINVAL, file.config_name() + ": exists and is not an untorn journal; refusing to overwrite it (" +
                                file.set_aside_advice() + " if it is not needed)");
    // New, or a header torn by a crash during reset: a reset only starts after the device
    // is durable, so nothing in such a journal is needed.
    if (size != 0) log_warning("journal " + file.name() + ": header incomplete (crash during reset); re-initialising");
    result.header = journal::Header{1, identity};
    write_journal_header(file, result.header);
    result.initialised = true;
    return result;
  }

  JournalReader reader(file, header, device.size());
  JournalReader::Record record;
  bool foreign = !journal::same_backing_file(header, identity);
  while (reader.next(record)) {
    if (foreign)
      throw IoError(EINVAL, file.config_name() + ": holds records for another backing file (" +
                                describe(header.identity) + "; this one has " + describe(identity) +
                                "); refusing to replay it. If the backing file was copied or "
                                "restored on purpose, " + file.set_aside_advice() + " to start without it");
    if (record.header.kind == journal::RecordKind::data)
      device.write(record.header.offset, record.data);
    else
      device.write_zeroes(record.header.offset, record.header.length, {.may_punch = true});
    ++result.records_replayed;
    result.bytes_replayed += record.header.length;
  }
  result.stop_reason = reader.stop_reason();
  if (result.records_replayed > 0) {
    device.sync();
    log_info("journal " + file.name() + ": replayed " + std::to_string(result.records_replayed) +
             " record(s), " + std::to_string(result.bytes_replayed) + " bytes (stopped at: " +
             result.stop_reason + ")");
  }
  result.header = journal::Header{header.epoch + 1, identity};
  write_journal_header(file, result.header);
  result.initialised = result.records_replayed == 0;
  return result;
}

}  // namespace untorn
