#include "device/atomic_writer.h"

#include <algorithm>
#include <csignal>

#include "util/io_error.h"
#include "util/log.h"

namespace untorn {

AtomicWriter::AtomicWriter(BlockDevice& device, JournalWriter* journal, AtomicWriterOptions options)
    : device_(device), journal_(journal), options_(options) {
  if (!journal_ && options_.mode != JournalMode::never)
    throw IoError(EINVAL, "internal: a journal is needed unless journal.mode is never");
  if (options_.native_atomic_unit == 0) options_.native_atomic_unit = 512;
}

bool AtomicWriter::fits_native_unit(uint64_t offset, uint64_t length) const {
  const uint64_t n = options_.native_atomic_unit;
  return length <= n && offset / n == (offset + length - 1) / n;
}

bool AtomicWriter::overlaps_journaled(uint64_t offset, uint64_t length) const {
  std::lock_guard lk(ranges_mutex_);
  auto it = journaled_ranges_.upper_bound(offset);
  if (it != journaled_ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second > offset) return true;
  }
  return it != journaled_ranges_.end() && it->first < offset + length;
}

void AtomicWriter::mark_journaled(uint64_t offset, uint64_t length) {
  std::lock_guard lk(ranges_mutex_);
  uint64_t begin = offset, end = offset + length;
  auto it = journaled_ranges_.upper_bound(begin);
  if (it != journaled_ranges_.begin() && std::prev(it)->second >= begin) --it;
  while (it != journaled_ranges_.end() && it->first <= end) {
    begin = std::min(begin, it->first);
    end = std::max(end, it->second);
    it = journaled_ranges_.erase(it);
  }
  journaled_ranges_.emplace(begin, end);
}

AtomicWriter::Method AtomicWriter::method_for(uint64_t offset, uint64_t length, bool atomic,
                                              bool is_zero) const {
  const bool rwf = !is_zero && device_.supports_atomic_write(offset, length);
  if (options_.mode == JournalMode::never || options_.unsafe_bypass_journal)
    return atomic && rwf && !fits_native_unit(offset, length) ? Method::rwf_atomic : Method::in_place;
  if (options_.mode == JournalMode::always && atomic) return Method::journal;
  // A record of the current epoch under this range: only the journal keeps the order.
  if (overlaps_journaled(offset, length)) return Method::journal;
  if (!atomic || fits_native_unit(offset, length)) return Method::in_place;
  return rwf ? Method::rwf_atomic : Method::journal;
}

AtomicWriter::JournalGate::JournalGate(AtomicWriter& w) : w_(w) {
  std::unique_lock lk(w_.checkpoint_mutex_);
  w_.checkpoint_cv_.wait(lk, [&] { return !w_.checkpointing_; });
  ++w_.journaled_in_flight_;
}

AtomicWriter::JournalGate::~JournalGate() {
  std::lock_guard lk(w_.checkpoint_mutex_);
  --w_.journaled_in_flight_;
  w_.checkpoint_cv_.notify_all();
}

void AtomicWriter::journaled_zero(uint64_t offset, uint64_t length, ZeroOptions zero_options) {
  JournalGate gate(*this);
  mark_journaled(offset, length);
  journal_->commit(journal::RecordKind::zero, offset, static_cast<uint32_t>(length), {});
  after_journal_commit();
  // The record is durable: a crash from here on is repaired by replay.
  device_.write_zeroes(offset, length, zero_options);
}

void AtomicWriter::after_journal_commit() {
  if (options_.kill_after_journal_commits == 0) return;
  if (test_commits_.fetch_add(1) + 1 < options_.kill_after_journal_commits) return;
  log_warning("test.kill_after_journal_commits: killing the server after a journal commit, before "
              "its writes go in place");
  std::raise(SIGKILL);
}

void AtomicWriter::throw_if_failed() const {
  if (!failed()) return;
  std::lock_guard lk(failure_mutex_);
  throw IoError(EIO, failure_ +
                         "; writes and flushes fail until untorn is restarted, because the "
                         "backing may have dropped data it could not write (the journal keeps "
                         "its records for recovery at the next start)");
}

void AtomicWriter::sync_device() {
  // One fdatasync at a time: the kernel reports a writeback error to one fdatasync only,
  // so a sync that overlapped a failing one could succeed without covering what the
  // failure dropped (found by the fault soak). Serialised, a sync either ran wholly
  // before the failure or sees it here.
  //
  // Group commit: a caller needs a sync that *started* after it arrived (one already
  // running may have begun before the caller's writes completed). It wants generation
  // started+1; whoever finds no sync running when that generation is due runs it, and
  // every caller that wanted it shares its outcome: a failure sets failed_ before the
  // generation is marked finished, so every sharer throws too (test:
  // AtomicWriterTest.FailedSharedSyncFailsEverySharer).
  std::unique_lock lk(sync_mutex_);
  throw_if_failed();
  const uint64_t want = syncs_started_ + 1;
  // A sync runs while started != finished.
  auto waiting = [&] { return syncs_finished_ < want && syncs_started_ != syncs_finished_; };
  if (waiting()) {
    std::lock_guard sl(stats_mutex_);
    ++stats_.sync_waits;  // counted as the wait begins (tests wait for it)
  }
  while (waiting()) sync_done_.wait(lk);
  // The sync we waited behind failed: it may have dropped our data, and the kernel
  // reports that only once, so a fresh sync would succeed without covering it (test:
  // AtomicWriterTest.WaitersBehindAFailingSyncFailToo).
  throw_if_failed();
  if (syncs_finished_ >= want) {  // another caller ran a sync that started after we came
    lk.unlock();
    {
      std::lock_guard sl(stats_mutex_);
      ++stats_.shared_syncs;
    }
    return;  // it succeeded: a failure is set before its generation is marked finished
  }
  // No sync running and ours not run: started == finished == want - 1. Run it.
  ++syncs_started_;
  lk.unlock();
  std::string failure;
  int failure_err = EIO;
  try {
    device_.sync();
  } catch (const IoError& e) {
    failure = e.what();
    failure_err = e.err();
  } catch (const std::exception& e) {
    failure = std::string("unexpected error during fdatasync: ") + e.what();
  } catch (...) {
    failure = "unexpected error during fdatasync";
  }
  if (!failure.empty()) fail_for_good("the backing's fdatasync", failure);
  lk.lock();
  ++syncs_finished_;
  sync_done_.notify_all();
  lk.unlock();
  {
    std::lock_guard sl(stats_mutex_);
    ++stats_.device_syncs;
  }
  if (!failure.empty()) throw IoError(failure_err, failure);
}

void AtomicWriter::fail_for_good(const char* what, const std::string& failure) {
  {
    std::lock_guard fl(failure_mutex_);
    if (!failed()) failure_ = std::string(what) + " failed earlier (" + failure + ")";
    failed_.store(true, std::memory_order_release);
  }
  log_warning(std::string(what) + " failed: " + failure +
              "; refusing every write and flush from now on, keeping the journal's records; "
              "restart untorn to recover");
}

void AtomicWriter::count(Method m, bool durable) {
  std::lock_guard lk(stats_mutex_);
  stats_.durable_writes += durable;
  switch (m) {
    case Method::in_place: ++stats_.in_place; break;
    case Method::rwf_atomic: ++stats_.rwf_atomic; break;
    case Method::journal: ++stats_.journaled; break;
  }
}

AtomicWriter::Method AtomicWriter::write(uint64_t offset, std::span<const std::byte> data,
                                         bool atomic, bool fua) {
  if (data.empty()) return Method::in_place;
  BatchWrite w;
  w.offset = offset;
  w.data = data;
  w.atomic = atomic;
  write_batch({&w, 1}, fua);
  if (w.error) throw IoError(w.error, w.message);
  return w.method;
}

void AtomicWriter::add_in_place(std::vector<WriteRequest>& out, uint64_t offset,
                                std::span<const std::byte> data, bool durable) const {
  // Test only: split at multiples of the piece size counted from the device's start, as
  // storage of that unit splits a write (RBD at its object boundaries).
  const uint64_t piece = options_.unsafe_split_writes;
  if (piece == 0 || data.empty() || offset / piece == (offset + data.size() - 1) / piece) {
    out.push_back({offset, data, 0, {}, durable});
    return;
  }
  for (size_t done = 0, n = 0; done < data.size(); done += n) {
    n = static_cast<size_t>(std::min<uint64_t>(piece - (offset + done) % piece, data.size() - done));
    out.push_back({offset + done, data.subspan(done, n), 0, {}, durable});
  }
}

void AtomicWriter::write_batch(std::span<BatchWrite> writes, bool fua) {
  if (failed()) {
    for (BatchWrite& w : writes) {
      try {
        throw_if_failed();
      } catch (const IoError& e) {
        w.error = e.err();
        w.message = e.what();
      }
    }
    return;
  }
  // FUA where the device writes durably by itself (RWF_DSYNC): in-place writes need no
  // device fdatasync, so concurrent FUA and writethrough requests never queue behind one.
  const bool durable = fua && device_.supports_durable_writes();
  std::vector<JournalWriter::Record> records;
  std::vector<BatchWrite*> journaled_writes;
  for (BatchWrite& w : writes) {
    w.error = 0;
    w.message.clear();
    w.method = method_for(w.offset, w.data.size(), w.atomic);
    if (w.method == Method::journal) {
      records.push_back({journal::RecordKind::data, w.offset, static_cast<uint32_t>(w.data.size()), w.data});
      journaled_writes.push_back(&w);
    }
  }
  if (records.empty()) {
    write_out(writes, durable);
  } else {
    // A checkpoint must not reset the journal before these records' in-place writes are
    // done: it waits while the gate stands.
    JournalGate gate(*this);
    for (const BatchWrite* w : journaled_writes) mark_journaled(w->offset, w->data.size());
    try {
      journal_->commit_batch(records);
      after_journal_commit();
    } catch (const IoError& e) {
      for (BatchWrite* w : journaled_writes) {
        w->error = e.err();
        w->message = e.what();
      }
    }
    write_out(writes, durable);  // every record is durable now
  }
  // Journaled writes are durable at commit, durable in-place ones at completion; the
  // rest need the device synced.
  bool needs_sync = false;
  for (const BatchWrite& w : writes)
    needs_sync |= fua && !w.error && w.method != Method::journal && !(durable && w.method == Method::in_place);
  if (needs_sync) sync_device();
  if (!records.empty() && journal_->record_bytes() > options_.checkpoint_bytes) checkpoint(false);
}

void AtomicWriter::write_out(std::span<BatchWrite> writes, bool durable) {
  // In-place writes (and journaled ones' in-place copies) as one device batch.
  std::vector<WriteRequest> requests;
  std::vector<size_t> first_request;  // per write, index of its first request
  for (BatchWrite& w : writes) {
    first_request.push_back(requests.size());
    if (w.error || w.method == Method::rwf_atomic) continue;
    add_in_place(requests, w.offset, w.data, durable && w.method == Method::in_place);
  }
  first_request.push_back(requests.size());
  if (options_.unsafe_split_writes) {
    // Test only: the pieces go out one after another, as a device without atomic writes
    // would tear them, so a kill can land between any two.
    for (WriteRequest& r : requests) device_.write_batch({&r, 1});
  } else {
    device_.write_batch(requests);
  }
  for (size_t i = 0; i < writes.size(); ++i) {
    BatchWrite& w = writes[i];
    if (w.error) continue;
    if (w.method == Method::rwf_atomic) {
      try {
        device_.write_atomic(w.offset, w.data);
      } catch (const IoError& e) {
        w.error = e.err();
        w.message = e.what();
      }
    }
    for (size_t r = first_request[i]; r < first_request[i + 1] && !w.error; ++r) {
      w.error = requests[r].error;
      w.message = requests[r].message;
    }
    if (w.error == EIO && durable && w.method == Method::in_place) {
      // A durable write syncs inside the kernel, which may have reported an earlier
      // writeback error of the file to it alone (a later fdatasync would succeed):
      // treat it as a failed sync (test: AtomicWriterTest.FailedDurableWriteFencesLikeAFailedSync).
      fail_for_good("a durable write of the backing", w.message);
    }
    if (!w.error) count(w.method, durable && w.method == Method::in_place);
  }
}

AtomicWriter::Method AtomicWriter::zero(uint64_t offset, uint64_t length, ZeroOptions zero_options,
                                        bool atomic, bool fua) {
  if (length == 0) return Method::in_place;
  throw_if_failed();
  const Method m = method_for(offset, length, atomic, /*is_zero=*/true);
  // A journaled zero commits its record before the device is asked; a fast zero the
  // device then refused would still be replayed. Refuse it first, changing nothing.
  if (m == Method::journal && zero_options.fast_only)
    throw IoError(ENOTSUP, "fast zero unsupported: this range needs the journal to stay crash-atomic");
  if (m == Method::journal)
    journaled_zero(offset, length, zero_options);
  else
    device_.write_zeroes(offset, length, zero_options);
  count(m, false);
  if (fua && m != Method::journal) sync_device();
  return m;
}

void AtomicWriter::checkpoint(bool for_flush) {
  std::unique_lock lk(checkpoint_mutex_);
  if (checkpointing_) {
    {
      std::lock_guard sl(stats_mutex_);
      ++stats_.checkpoint_waits;
    }
    checkpoint_cv_.wait(lk, [&] { return !checkpointing_; });
    // A size-triggered checkpoint only wanted the journal shorter: someone did it.
    if (!for_flush) return;
  }
  checkpointing_ = true;
  checkpoint_cv_.wait(lk, [&] { return journaled_in_flight_ == 0; });
  lk.unlock();
  struct Done {
    AtomicWriter* w;
    ~Done() {
      std::lock_guard lk(w->checkpoint_mutex_);
      w->checkpointing_ = false;
      w->checkpoint_cv_.notify_all();
    }
  } done{this};
  // Every record's in-place write has completed; make them durable, then the records
  // are no longer needed. A failed sync throws before the reset, and fails the writer so
  // that no later sync resets the journal either.
  sync_device();
  throw_if_failed();  // never reset the journal once a sync has failed (fsyncgate)
  if (journal_->record_bytes() > 0) {
    journal_->reset();
    std::lock_guard rl(ranges_mutex_);
    journaled_ranges_.clear();
    std::lock_guard sl(stats_mutex_);
    ++stats_.checkpoints;
  }
}

void AtomicWriter::flush() {
  throw_if_failed();
  if (journal_) checkpoint(true);  // device fdatasync, and a journal reset if it has records
  else sync_device();
}

AtomicWriter::Stats AtomicWriter::stats() const {
  std::lock_guard lk(stats_mutex_);
  return stats_;
}

}  // namespace untorn
