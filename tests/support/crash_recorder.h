// tests/support/crash_recorder.h — in-memory storage that records every write and sync,
// and rebuilds the states a crash could leave (dm-log-writes style).
//
// Owns: the event log and the two in-memory files it describes (device and journal).
// RecordingDevice / RecordingJournalFile apply each operation to their current contents
// and append it to the log; both hold a reference to the CrashRecorder, which must
// outlive them. CrashStateBuilder turns the log into the states a crash could leave.
#pragma once

#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <random>
#include <string>
#include <vector>

#include "device/block_device.h"
#include "device/journal_file.h"
#include "util/io_error.h"

namespace untorn::testing {

struct Event {
  // sync_failed: an fdatasync that failed; every earlier event of its file not yet
  // durable is lost for good (the kernel may drop the pages and mark them clean).
  // settled: a durable write (RWF_DSYNC) completed: the event at index `offset` is durable
  // from here on (before this marker a crash may drop or tear it like any write).
  enum class Kind { write, zero, atomic_write, sync, truncate, sync_failed, settled } kind;
  int file;  // 0: device, 1: journal
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<std::byte> data;
};

// What happens to one event written after its file's last sync.
enum class Fate { applied, dropped, torn };

// Thread-safe to append to and to ask position(); log() only once the writers stopped.
class CrashRecorder {
 public:
  CrashRecorder() = default;
  CrashRecorder(CrashRecorder&& other) noexcept : log_(std::move(other.log_)) {}
  std::vector<Event>& log() { return log_; }
  const std::vector<Event>& log() const { return log_; }
  size_t position() const {
    std::lock_guard lk(mutex_);
    return log_.size();
  }
  // Returns the event's index.
  size_t append(Event e) {
    std::lock_guard lk(mutex_);
    log_.push_back(std::move(e));
    return log_.size() - 1;
  }
  // The durable write at `index` (of `file`) completed.
  void append_settled(int file, size_t index) {
    std::lock_guard lk(mutex_);
    log_.push_back({Event::Kind::settled, file, index, 0, {}});
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Event> log_;
};

// Builds crash states from a recording, for cut points in increasing order. A state is
// each file's events up to its last sync before the cut (kept as durable images that
// advance with the cut), plus every later event applied, dropped or torn (a random subset
// of its pieces, split where the storage splits them, at multiples of `device_tear` bytes
// on the device and of 512-byte sectors in the journal, counted from the file's start:
// a 4K write at 62K on storage of 64K units tears at 64K; RWF_ATOMIC writes and the
// writes of a RADOS journal are never torn), except durable writes whose `settled` marker lies
// before the cut: those are applied in every state, in log order. Holds a reference to
// the recorder's log.
class CrashStateBuilder {
 public:
  // The files start as `device` and `journal` (what they held when recording began).
  CrashStateBuilder(const CrashRecorder& rec, std::vector<std::byte> device, std::vector<std::byte> journal,
              uint64_t device_tear)
      : log_(rec.log()), device_(std::move(device)), journal_(std::move(journal)), tear_{device_tear, 512} {}

  // Moves the cut forward; returns the events not covered by their file's last sync.
  const std::vector<size_t>& advance(size_t cut) {
    // A failed sync loses its file's events since the last durable point.
    for (size_t i = scanned_; i < cut; ++i) {
      if (log_[i].kind != Event::Kind::sync_failed) continue;
      const int f = log_[i].file;
      size_t from = applied_[f];
      for (size_t j = 0; j < i; ++j)
        if (log_[j].file == f && log_[j].kind == Event::Kind::sync) from = std::max(from, j + 1);
      for (size_t j = from; j < i; ++j)
        if (log_[j].file == f) lost_.insert(j);
    }
    scanned_ = std::max(scanned_, cut);
    // Durable writes settled before the cut and not yet under their file's last sync: they
    // are in every state, at their place in the log (so older pending writes never win).
    std::set<size_t> settled;
    for (size_t i = 0; i < cut; ++i)
      if (log_[i].kind == Event::Kind::settled) settled.insert(log_[i].offset);
    size_t last_sync[2] = {applied_[0], applied_[1]};
    for (size_t i = 0; i < cut; ++i)
      if (log_[i].kind == Event::Kind::sync) last_sync[log_[i].file] = i + 1;
    for (int f = 0; f < 2; ++f) {
      for (size_t i = applied_[f]; i < last_sync[f]; ++i)
        if (log_[i].file == f && (!lost_.count(i) || settled.count(i)))
          apply(log_[i], Fate::applied, f == 0 ? device_ : journal_, nullptr);
      applied_[f] = std::max(applied_[f], last_sync[f]);
    }
    pending_.clear();
    settled_.clear();
    for (size_t i = 0; i < cut; ++i) {
      const Event& e = log_[i];
      if (e.kind == Event::Kind::sync || e.kind == Event::Kind::sync_failed ||
          e.kind == Event::Kind::settled || i < applied_[e.file])
        continue;
      if (settled.count(i)) settled_.push_back(i);
      else if (!lost_.count(i)) pending_.push_back(i);
    }
    return pending_;
  }

  std::pair<std::vector<std::byte>, std::vector<std::byte>> build(const std::vector<Fate>& fates,
                                                                  std::mt19937_64& rng) const {
    auto dev = device_;
    auto jnl = journal_;
    size_t s = 0;
    auto apply_settled_before = [&](size_t index) {
      for (; s < settled_.size() && settled_[s] < index; ++s) {
        const Event& e = log_[settled_[s]];
        apply(e, Fate::applied, e.file == 0 ? dev : jnl, nullptr);
      }
    };
    for (size_t k = 0; k < pending_.size(); ++k) {
      apply_settled_before(pending_[k]);
      const Event& e = log_[pending_[k]];
      apply(e, fates[k], e.file == 0 ? dev : jnl, &rng);
    }
    apply_settled_before(SIZE_MAX);
    return {std::move(dev), std::move(jnl)};
  }

 private:
  void apply(const Event& e, Fate fate, std::vector<std::byte>& f, std::mt19937_64* rng) const {
    if (fate == Fate::dropped || e.kind == Event::Kind::sync || e.kind == Event::Kind::sync_failed ||
        e.kind == Event::Kind::settled)
      return;
    if (e.kind == Event::Kind::truncate) {
      f.resize(e.offset, std::byte{0});
      return;
    }
    if (f.size() < e.offset + e.length) f.resize(e.offset + e.length, std::byte{0});
    for (uint64_t off = 0, n = 0; off < e.length; off += n) {
      const uint64_t unit = tear_[e.file];
      n = e.kind == Event::Kind::atomic_write ? e.length : std::min(unit - (e.offset + off) % unit, e.length - off);
      if (fate == Fate::torn && (*rng)() % 2) continue;
      if (e.kind == Event::Kind::zero) std::memset(f.data() + e.offset + off, 0, n);
      else std::memcpy(f.data() + e.offset + off, e.data.data() + off, n);
    }
  }

  const std::vector<Event>& log_;
  std::vector<std::byte> device_;
  std::vector<std::byte> journal_;
  size_t applied_[2] = {0, 0};
  size_t scanned_ = 0;
  std::set<size_t> lost_;
  uint64_t tear_[2];
  std::vector<size_t> pending_;
  std::vector<size_t> settled_;  // durable writes in no sync yet (see advance)
};

// A BlockDevice over a byte vector; io_align 512. With a recorder, logs what it does.
class MemoryDevice final : public BlockDevice {
 public:
  MemoryDevice(std::vector<std::byte> contents, CrashRecorder* recorder = nullptr,
               uint64_t atomic_unit_max = 0)
      : data_(std::move(contents)), recorder_(recorder), atomic_max_(atomic_unit_max) {}

  // Durable writes (RWF_DSYNC): offered when `offer`; honoured (a settled marker after
  // the write) unless `honour` is false, a device that lies (negative controls).
  void set_durable_writes(bool offer, bool honour = true) {
    offer_durable_ = offer;
    honour_durable_ = honour;
  }
  bool supports_durable_writes() const override { return offer_durable_; }
  void write_batch(std::span<WriteRequest> writes) override {
    for (WriteRequest& w : writes) {
      try {
        check(w.offset, w.data.size());
        std::memcpy(data_.data() + w.offset, w.data.data(), w.data.size());
        const size_t index = record(Event::Kind::write, w.offset, w.data.size(), w.data);
        if (w.durable && offer_durable_ && honour_durable_ && recorder_) recorder_->append_settled(0, index);
      } catch (const IoError& e) {
        w.error = e.err();
        w.message = e.what();
      }
    }
  }

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
  size_t record(Event::Kind kind, uint64_t offset, uint64_t length, std::span<const std::byte> d) {
    if (!recorder_) return 0;
    return recorder_->append({kind, 0, offset, length, {d.begin(), d.end()}});
  }

  std::vector<std::byte> data_;
  CrashRecorder* recorder_;
  uint64_t atomic_max_;
  StorageInfo info_;
  bool offer_durable_ = false;
  bool honour_durable_ = true;
};

// A JournalFile over a byte vector. With a recorder, logs what it does: as a POSIX file
// (writes volatile and tearable at 512-byte sectors until a sync), or, after
// use_rados_semantics(), as RadosJournalFile's RADOS object: every write (a write_gather
// whole) is one op, never torn, durable when it returns, and sync() does nothing.
class MemoryJournalFile final : public JournalFile {
 public:
  explicit MemoryJournalFile(std::vector<std::byte> contents = {}, CrashRecorder* recorder = nullptr)
      : data_(std::move(contents)), recorder_(recorder) {}
  void use_rados_semantics() { rados_ = true; }

  uint64_t size() override { return data_.size(); }
  size_t read(uint64_t offset, std::span<std::byte> dst) override {
    if (offset >= data_.size() || dst.empty()) return 0;
    size_t n = std::min<size_t>(dst.size(), data_.size() - offset);
    std::memcpy(dst.data(), data_.data() + offset, n);
    return n;
  }
  void write(uint64_t offset, std::span<const std::byte> src) override {
    if (data_.size() < offset + src.size()) data_.resize(offset + src.size(), std::byte{0});
    std::memcpy(data_.data() + offset, src.data(), src.size());
    record({rados_ ? Event::Kind::atomic_write : Event::Kind::write, 1, offset, src.size(), {src.begin(), src.end()}});
  }
  void write_gather(uint64_t offset, std::span<const std::span<const std::byte>> pieces) override {
    if (!rados_) return JournalFile::write_gather(offset, pieces);
    std::vector<std::byte> joined;
    for (auto piece : pieces) joined.insert(joined.end(), piece.begin(), piece.end());
    write(offset, joined);
  }
  void truncate(uint64_t size) override {
    data_.resize(size, std::byte{0});
    record({Event::Kind::truncate, 1, size, 0, {}});
  }
  void sync() override {
    if (recorder_ && !rados_) recorder_->append({Event::Kind::sync, 1, 0, 0, {}});
  }
  const std::string& name() const override { return name_; }
  const std::vector<std::byte>& contents() const { return data_; }

 private:
  void record(Event e) {
    if (!recorder_) return;
    const size_t index = recorder_->append(std::move(e));
    if (rados_) recorder_->append_settled(1, index);
  }

  std::vector<std::byte> data_;
  CrashRecorder* recorder_;
  bool rados_ = false;
  std::string name_ = "memory-journal";
};

}  // namespace untorn::testing
