// tests/support/journaled_backing.h — the device stack a request path sits on, for tests.
//
// Owns, in order: a sparse backing file of `size` in the given TempDir (L = 4096), a
// FaultyDevice over it, its journal (recovered, so its epoch is current), an ExtentMap and
// the MappedDevice over the FaultyDevice that keeps it current, and an AtomicWriter
// through the MappedDevice with A = 64K over a native atomic unit of 4K, so writes above
// 4K are journaled. Destroy it before opening the same backing file again (it holds the flock).
#pragma once

#include <memory>

#include "cache/extent_map.h"
#include "cache/mapped_device.h"
#include "device/atomic_writer.h"
#include "device/backing_file.h"
#include "device/journal_file.h"
#include "device/journal_writer.h"
#include "device/recovery.h"
#include "tests/support/fault_injection.h"
#include "tests/support/temp_dir.h"

namespace untorn::testing {

struct JournaledBacking {
  JournaledBacking(const TempDir& dir, uint64_t size) {
    Config::Backing b;
    b.path = dir.file("d.img");
    b.size = size;
    device = BackingFile::open(b, 4096);
    faulty = std::make_unique<FaultyDevice>(*device);
    journal_file = PosixJournalFile::open(dir.file("d.img.journal"));
    auto recovered = recover_journal(*faulty, *journal_file, journal::Identity{size, 1, 1, 4096});
    journal = std::make_unique<JournalWriter>(*journal_file, recovered.header);
    AtomicWriterOptions options;
    options.atomic_write_unit_max = 65536;
    options.native_atomic_unit = 4096;
    map = std::make_unique<ExtentMap>(*faulty, 4096, ExtentMap::Options{});
    mapped = std::make_unique<MappedDevice>(*faulty, *map);
    writer = std::make_unique<AtomicWriter>(*mapped, journal.get(), options);
  }

  std::unique_ptr<BackingFile> device;
  std::unique_ptr<FaultyDevice> faulty;
  std::unique_ptr<JournalFile> journal_file;
  std::unique_ptr<JournalWriter> journal;
  std::unique_ptr<ExtentMap> map;
  std::unique_ptr<MappedDevice> mapped;
  std::unique_ptr<AtomicWriter> writer;
};

}  // namespace untorn::testing
