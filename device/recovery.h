// device/recovery.h — journal recovery, run at every open before the device is served.
//
// recover_journal() replays every valid record of the current epoch into the device in
// order, fdatasyncs the device, then resets the journal (new epoch, durable). A crash at
// any point of it leaves records that the next open replays again (replay is idempotent:
// records hold whole data, applied in order). A journal that names another backing file
// and holds records is refused (IoError EINVAL), never replayed; a file that is not an
// untorn journal at all is refused too, never overwritten.
#pragma once

#include <cstdint>

#include "device/block_device.h"
#include "device/journal_file.h"
#include "device/journal_format.h"

namespace untorn {

struct RecoveryResult {
  journal::Header header;        // the journal's header after recovery (new epoch)
  uint64_t records_replayed = 0;
  uint64_t bytes_replayed = 0;
  bool initialised = false;      // the journal was new (or empty of records) and was set up
  const char* stop_reason = "";
};

// What a read-only server needs to know before it serves: how many valid records of the
// current epoch the journal holds (writes acknowledged to clients that may not be in the
// backing file yet), and whether the journal names another backing file than `identity`.
// Reads only; 0 records for a new, empty or non-journal file (nothing of ours in it).
struct PendingRecords {
  uint64_t records = 0;
  uint64_t bytes = 0;
  bool foreign = false;
};
PendingRecords pending_journal_records(JournalFile& journal, uint64_t device_size,
                                       const journal::Identity& identity);

RecoveryResult recover_journal(BlockDevice& device, JournalFile& journal,
                               const journal::Identity& identity);

}  // namespace untorn
