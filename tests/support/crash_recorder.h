// tests/support/crash_recorder.h — in-memory storage that records every write and sync,
// and rebuilds the states a crash could leave (dm-log-writes style).
//
// Owns: the event log and the two in-memory files it describes (device and journal).
// RecordingDevice / RecordingJournalFile apply each operation to their current contents
// and append it to the log; both hold a reference to the CrashRecorder, which must
// outlive them. crash_state() replays the log up to a cut point: every event of a file up
// to that file's last sync before the cut is applied; each later event is applied,
// dropped or torn (a random subset of its tear units) as the caller's choices say.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "device/block_device.h"
#include "device/journal_file.h"
#include "util/io_error.h"

namespace untorn::testing {

struct Event {
  enum class Kind { write, zero, atomic_write, sync, truncate } kind;
  int file;  // 0: device, 1: journal
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<std::byte> data;
};

// What happens to one event written after its file's last sync.
enum class Fate { applied, dropped, torn };

class CrashRecorder {
 public:
  std::vector<Event>& log() { return log_; }
  const std::vector<Event>& log() const { return log_; }
  size_t position() const { return log_.size(); }

  // Indexes (into the log, before `cut`) of events not covered by their file's last sync.
  std::vector<size_t> unsynced(size_t cut) const {
    size_t last_sync[2] = {0, 0};
    bool seen[2] = {false, false};
    for (size_t i = 0; i < cut; ++i)
      if (log_[i].kind == Event::Kind::sync) {
        last_sync[log_[i].file] = i;
        seen[log_[i].file] = true;
      }
    std::vector<size_t> out;
    for (size_t i = 0; i < cut; ++i) {
      const Event& e = log_[i];
      if (e.kind == Event::Kind::sync) continue;
      if (!seen[e.file] || i > last_sync[e.file]) out.push_back(i);
    }
    return out;
  }

  struct State {
    std::vector<std::byte> device;
    std::vector<std::byte> journal;
  };

  // The files as a crash at `cut` leaves them. `fates[k]` is the fate of unsynced(cut)[k];
  // torn events keep a random subset of their `tear_unit[file]`-sized pieces.
  State crash_state(size_t cut, const std::vector<Fate>& fates, uint64_t device_size,
                    const uint64_t tear_unit[2], std::mt19937_64& rng) const {
    State s;
    s.device.assign(device_size, std::byte{0});
    auto pending = unsynced(cut);
    size_t k = 0;
    for (size_t i = 0; i < cut; ++i) {
      const Event& e = log_[i];
      if (e.kind == Event::Kind::sync) continue;
      Fate fate = Fate::applied;
      if (k < pending.size() && pending[k] == i) fate = fates[k++];
      if (fate == Fate::dropped) continue;
      std::vector<std::byte>& f = e.file == 0 ? s.device : s.journal;
      if (e.kind == Event::Kind::truncate) {
        f.resize(e.offset, std::byte{0});
        continue;
      }
      if (f.size() < e.offset + e.length) f.resize(e.offset + e.length, std::byte{0});
      const uint64_t unit = e.kind == Event::Kind::atomic_write ? e.length : tear_unit[e.file];
      for (uint64_t off = 0; off < e.length; off += unit) {
        if (fate == Fate::torn && rng() % 2) continue;
        const uint64_t n = std::min(unit, e.length - off);
        if (e.kind == Event::Kind::zero) std::memset(f.data() + e.offset + off, 0, n);
        else std::memcpy(f.data() + e.offset + off, e.data.data() + off, n);
      }
    }
    return s;
  }

 private:
  std::vector<Event> log_;
};

// A BlockDevice over a byte vector; io_align 512. With a recorder, logs what it does.
class MemoryDevice final : public BlockDevice {
 public:
  MemoryDevice(std::vector<std::byte> contents, CrashRecorder* recorder = nullptr,
               uint64_t atomic_unit_max = 0)
      : data_(std::move(contents)), recorder_(recorder), atomic_max_(atomic_unit_max) {}

  uint64_t size() const override { return data_.size(); }
  uint32_t io_align() const override { return 512; }
  const StorageInfo& storage() const override { return info_; }
  void read(uint64_t offset, std::span<std::byte> dst) override {
    check(offset, dst.size());
    std::memcpy(dst.data(), data_.data() + offset, dst.size());
  }
  void write(uint64_t offset, std::span<const std::byte> src) override {
    check(offset, src.size());
    std::memcpy(data_.data() + offset, src.data(), src.size());
    record(Event::Kind::write, offset, src.size(), src);
  }
  bool supports_atomic_write(uint64_t offset, uint64_t length) const override {
    return atomic_max_ != 0 && length <= atomic_max_ && (length & (length - 1)) == 0 &&
           offset % length == 0;
  }
  void write_atomic(uint64_t offset, std::span<const std::byte> src) override {
    if (!supports_atomic_write(offset, src.size())) throw_atomic_unsupported();
    check(offset, src.size());
    std::memcpy(data_.data() + offset, src.data(), src.size());
    record(Event::Kind::atomic_write, offset, src.size(), src);
  }
  void write_zeroes(uint64_t offset, uint64_t length, ZeroOptions) override {
    check(offset, length);
    std::memset(data_.data() + offset, 0, length);
    record(Event::Kind::zero, offset, length, {});
  }
  void sync() override { record(Event::Kind::sync, 0, 0, {}); }
  std::vector<Extent> extents(uint64_t offset, uint64_t length) override {
    return {{offset, length, true}};
  }
  const std::vector<std::byte>& contents() const { return data_; }

 private:
  void check(uint64_t offset, uint64_t length) const {
    if (offset > data_.size() || length > data_.size() - offset || offset % 512 || length % 512)
      throw IoError(EINVAL, "memory device: bad range");
  }
  void record(Event::Kind kind, uint64_t offset, uint64_t length, std::span<const std::byte> d) {
    if (!recorder_) return;
    recorder_->log().push_back({kind, 0, offset, length, {d.begin(), d.end()}});
  }

  std::vector<std::byte> data_;
  CrashRecorder* recorder_;
  uint64_t atomic_max_;
  StorageInfo info_;
};

// A JournalFile over a byte vector. With a recorder, logs what it does.
class MemoryJournalFile final : public JournalFile {
 public:
  explicit MemoryJournalFile(std::vector<std::byte> contents = {}, CrashRecorder* recorder = nullptr)
      : data_(std::move(contents)), recorder_(recorder) {}

  uint64_t size() override { return data_.size(); }
  size_t read(uint64_t offset, std::span<std::byte> dst) override {
    if (offset >= data_.size()) return 0;
    size_t n = std::min<size_t>(dst.size(), data_.size() - offset);
    std::memcpy(dst.data(), data_.data() + offset, n);
    return n;
  }
  void write(uint64_t offset, std::span<const std::byte> src) override {
    if (data_.size() < offset + src.size()) data_.resize(offset + src.size(), std::byte{0});
    std::memcpy(data_.data() + offset, src.data(), src.size());
    if (recorder_)
      recorder_->log().push_back({Event::Kind::write, 1, offset, src.size(), {src.begin(), src.end()}});
  }
  void truncate(uint64_t size) override {
    data_.resize(size, std::byte{0});
    if (recorder_) recorder_->log().push_back({Event::Kind::truncate, 1, size, 0, {}});
  }
  void sync() override {
    if (recorder_) recorder_->log().push_back({Event::Kind::sync, 1, 0, 0, {}});
  }
  const std::string& name() const override { return name_; }
  const std::vector<std::byte>& contents() const { return data_; }

 private:
  std::vector<std::byte> data_;
  CrashRecorder* recorder_;
  std::string name_ = "memory-journal";
};

}  // namespace untorn::testing
