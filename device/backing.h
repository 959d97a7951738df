// device/backing.h — what untorn serves: a BlockDevice plus what the server must know of it.
//
// Two implementations: BackingFile (a raw file, the default) and RbdImage (an RBD image
// through librbd, backing.rbd). open_backing() picks one from the config. Each holds its
// storage for its whole life so that no second untorn server writes it (the file's flock,
// the image's exclusive lock), and each knows where its journal lives (a file beside the
// backing file, a RADOS object beside the image), so recovery finds it wherever it runs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "conf/config.h"
#include "device/block_device.h"
#include "device/journal_file.h"
#include "device/journal_format.h"

namespace untorn {

class Backing : public BlockDevice {
 public:
  // "backing file /srv/disk.img", "RBD image rbd/disk1": names it in messages.
  virtual const std::string& description() const = 0;
  // The size the storage has now: differs from size() only if something else resized it.
  virtual uint64_t size_on_disk() const = 0;
  // What a journal names this storage by (with the device's logical block size L); it
  // survives a restart and a move to another host.
  virtual journal::Identity identity(uint32_t logical_block_size) const = 0;
  // The largest naturally aligned unit the storage never tears, as the storage itself
  // tells; 0 when it cannot (the server then assumes 512 and says so).
  virtual uint64_t native_atomic_unit() const = 0;
  // The journal for this storage (`journal` is the config's journal section), created
  // when missing. Throws IoError naming where it lives.
  virtual std::unique_ptr<JournalFile> open_journal(const Config::Journal& journal) = 0;
  // The same, only to look (a read-only server); nullptr when there is none.
  virtual std::unique_ptr<JournalFile> open_journal_readonly(const Config::Journal& journal) = 0;
};

// What to do with storage that has `size` bytes now (a file's, an image's; `kind` is
// "file" or "image" in messages), given backing.size and backing.resize: serve `serve`
// bytes, after resizing to it when `resize`; `problem` (refuse to start) when not empty.
struct SizePlan {
  uint64_t serve = 0;
  bool resize = false;
  std::string problem;
};
SizePlan plan_backing_size(uint64_t size, const Config::Backing& backing, uint32_t logical_block_size,
                           bool readonly, const std::string& kind);

// Opens the backing the config names: backing.rbd when set, else backing.path. Throws
// IoError with a message naming the config key to change.
std::unique_ptr<Backing> open_backing(const Config::Backing& backing, uint32_t logical_block_size,
                                      bool readonly);

}  // namespace untorn
