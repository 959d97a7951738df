#include "cache/writeback.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "util/io_error.h"

namespace untorn {

Writeback::Writeback(FolioCache& cache, RangeLock& locks, AtomicWriter& writer, CacheStats& stats,
                     WritebackOptions options)
    : cache_(cache),
      locks_(locks),
      writer_(writer),
      stats_(stats),
      options_(options),
      block_(cache.block_size()) {}

Writeback::~Writeback() { stop(); }

void Writeback::start() {
  std::lock_guard lk(state_mutex_);
  if (!threads_.empty()) return;
  stopping_ = false;
  running_ = true;
  for (unsigned i = 0; i < std::max(1u, options_.threads); ++i)
    threads_.emplace_back([this, i] { thread_main(i); });
}

void Writeback::stop() {
  {
    std::lock_guard lk(state_mutex_);
    stopping_ = true;
    work_.notify_all();
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  running_ = false;
}

void Writeback::add_dirty(int64_t bytes) {
  const uint64_t now = dirty_bytes_.fetch_add(static_cast<uint64_t>(bytes)) + static_cast<uint64_t>(bytes);
  if (bytes > 0 && now > options_.background_bytes && running_) {
    std::lock_guard lk(state_mutex_);
    if (!kicked_) {
      kicked_ = true;
      work_.notify_all();
    }
  }
}

uint64_t Writeback::begin_batch() {
  std::lock_guard lk(state_mutex_);
  const uint64_t seq = next_seq_++;
  in_flight_.insert(seq);
  batches_running_.fetch_add(1);
  return seq;
}

void Writeback::end_batch(uint64_t seq) {
  bool wake;
  {
    std::lock_guard lk(state_mutex_);
    in_flight_.erase(in_flight_.find(seq));
    batches_running_.fetch_sub(1);
    completions_.fetch_add(1);
    wake = progress_waiters_ != 0;
  }
  // Outside the mutex, so a woken waiter does not block on it at once; and only when a
  // waiter is there (a request's write-through ends a batch every time).
  if (wake) progress_.notify_all();
}

void Writeback::wait_progress(std::unique_lock<std::mutex>& lk, const std::function<bool()>& done) {
  ++progress_waiters_;
  progress_.wait(lk, done);
  --progress_waiters_;
}

void Writeback::record_error(std::string_view message) noexcept {
  std::lock_guard lk(state_mutex_);
  ++failures_;  // counted first: a flush fails on the count, message or not
  try {
    last_error_ = message;
  } catch (...) {
    last_error_.clear();
  }
}

bool Writeback::gather_group(const FolioCache::Ref& f, size_t i, std::vector<Piece>& pieces) {
  FolioCache::Ref cur = f;
  size_t first = i;
  for (;;) {
    size_t j;
    {
      std::lock_guard fl(cur->mutex());
      // A block in the group that is not dirty (under writeback, or dropped): not whole.
      if (!cur->test(Folio::dirty, first)) return false;
      j = first + 1;
      while (j < cur->blocks() && cur->test(Folio::joined, j)) {
        if (!cur->test(Folio::dirty, j)) return false;
        ++j;
      }
      pieces.push_back({cur, first, j - first});
      if (j < cur->blocks()) return true;
    }
    // The group may go on in the next folio.
    FolioCache::Ref next = cache_.find(cur->end(), false);
    if (!next) return true;
    std::lock_guard nl(next->mutex());
    if (!next->test(Folio::joined, 0)) return true;
    cur = std::move(next);
    first = 0;
  }
}

std::pair<FolioCache::Ref, size_t> Writeback::group_start(FolioCache::Ref f, size_t i) {
  // A group is at most A long: never walk further back than that.
  for (uint64_t steps = 0; steps <= options_.atomic_write_unit_max / block_; ++steps) {
    {
      std::lock_guard fl(f->mutex());
      if (!f->test(Folio::joined, i)) return {std::move(f), i};
    }
    if (i > 0) {
      --i;
      continue;
    }
    FolioCache::Ref prev = f->offset() ? cache_.find(f->offset() - 1, false) : nullptr;
    if (!prev) return {nullptr, 0};
    f = std::move(prev);
    i = f->blocks() - 1;
  }
  return {nullptr, 0};
}

Writeback::Op Writeback::make_op(std::vector<Piece> pieces, bool atomic) const {
  Op op;
  op.offset = pieces.front().folio->block_offset(pieces.front().first);
  for (const Piece& p : pieces) op.length += uint64_t{p.count} * block_;
  op.atomic = atomic;
  op.pieces = std::move(pieces);
  if (op.pieces.size() > 1) op.bounce.resize(op.length);
  return op;
}

void Writeback::add_op(std::vector<Op>& ops, Op op) {
  // Combine with the previous op when both are in place on their own and adjacent in one
  // folio: the combination is one write whose every group is still whole.
  if (!ops.empty() && op.pieces.size() == 1) {
    Op& last = ops.back();
    if (last.pieces.size() == 1 && last.pieces[0].folio == op.pieces[0].folio &&
        last.offset + last.length == op.offset && last.length + op.length <= options_.batch_bytes &&
        writer_.method_for(last.offset, last.length, last.atomic) == AtomicWriter::Method::in_place &&
        writer_.method_for(op.offset, op.length, op.atomic) == AtomicWriter::Method::in_place) {
      last.pieces[0].count += op.pieces[0].count;
      last.length += op.length;
      last.atomic = false;
      return;
    }
  }
  ops.push_back(std::move(op));
}

void Writeback::abandon(std::vector<Op>& ops, uint64_t seq, bool dropped) noexcept {
  // Still listed dirty: mark_clean keeps a folio listed while a block is under writeback.
  for (Op& op : ops)
    for (Piece& p : op.pieces) {
      std::lock_guard fl(p.folio->mutex());
      p.folio->set(Folio::writeback, p.first, p.first + p.count, false);
      p.folio->set(Folio::dirty, p.first, p.first + p.count, true);
    }
  if (!ops.empty() && !dropped)
    // A flush running meanwhile may have passed these groups by while they were under
    // writeback, and waited for this batch: it must not succeed without them (D1).
    // (`dropped`: the caller drops the range from the cache; nothing stays dirty.)
    record_error("writeback ran out of memory while collecting a batch; its data stays dirty");
  ops.clear();
  end_batch(seq);  // wakes writers waiting for these blocks
}

uint64_t Writeback::collect(uint64_t lo, uint64_t hi, uint64_t max_bytes, bool expired_only,
                            std::vector<Op>& ops) {
  std::lock_guard cl(collector_mutex_);
  const auto expired_before = std::chrono::steady_clock::now() - options_.expire;
  uint64_t bytes = 0;
  cache_.for_each_folio(lo, hi, [&](FolioCache::Ref& f) {
    const size_t e = f->block_of(std::min(hi, f->end()) - 1) + 1;
    size_t i = f->block_of(std::max(lo, f->offset()));
    while (i < e && bytes < max_bytes) {
      bool joined;
      {
        std::lock_guard fl(f->mutex());
        if (expired_only && f->dirtied_at > expired_before) break;
        i = f->find(Folio::dirty, i, e);
        if (i == e) break;
        joined = f->test(Folio::joined, i);
      }
      FolioCache::Ref start_folio = f;
      size_t start = i;
      if (joined) {
        // The group began at an earlier block. If that block is in [lo, hi), this scan
        // met it already (the group was taken, or is not whole). If it lies before lo, the
        // group touches [lo, hi) all the same: take it from its start, or a group that a
        // write moved in front of an earlier collect call would be missed (D1).
        auto [sf, si] = group_start(f, i);
        if (!sf || sf->block_offset(si) >= lo) {
          ++i;
          continue;
        }
        start_folio = std::move(sf);
        start = si;
      }
      bool atomic;
      {
        std::lock_guard fl(start_folio->mutex());
        atomic = start_folio->test(Folio::atomic, start);
      }
      std::vector<Piece> pieces;
      if (!gather_group(start_folio, start, pieces)) {
        ++i;
        continue;
      }
      // Everything that allocates happens before the group is taken: a group moved to
      // writeback must reach an op, or nothing would ever complete it (its blocks would
      // stay under writeback, skipped by every flush and waited for by every writer).
      Op op = make_op(std::move(pieces), atomic);
      if (ops.size() == ops.capacity()) ops.reserve(std::max<size_t>(16, 2 * ops.size()));
#ifdef UNTORN_TEST_HOOKS
      if (hooks_ && hooks_->before_take_group) hooks_->before_take_group();
#endif
      for (Piece& p : op.pieces) {
        std::lock_guard fl(p.folio->mutex());
        p.folio->set(Folio::dirty, p.first, p.first + p.count, false);
        p.folio->set(Folio::writeback, p.first, p.first + p.count, true);
      }
      bytes += op.length;
      // Go on after the group's last block in this folio (or past the folio).
      i = op.pieces.back().folio == f ? op.pieces.back().first + op.pieces.back().count : e;
      // A group spanning folios is copied to one buffer (its bytes are stable now).
      size_t at = 0;
      if (op.pieces.size() > 1)
        for (const Piece& p : op.pieces) {
          std::memcpy(op.bounce.data() + at, p.folio->block_data(p.first), p.count * block_);
          at += p.count * block_;
        }
      add_op(ops, std::move(op));
    }
    return bytes < max_bytes;
  });
  return bytes;
}

void Writeback::submit(std::vector<Op>& ops, uint64_t seq, bool fua, bool dropped) {
  struct EndBatch {
    Writeback* w;
    uint64_t seq;
    ~EndBatch() { w->end_batch(seq); }
  } end{this, seq};
  if (ops.empty()) return;
  // Every op completes below, written or dirty again, whatever is thrown on the way: a
  // group left under writeback would never be written (D1). Nothing allocates from the
  // I/O's end to the last completion; the error's message is built afterwards.
  std::vector<AtomicWriter::BatchWrite> writes;
  bool batch_failed = false;  // as a whole: every write without its own error failed
  std::exception_ptr batch_failure;  // why (null for an exception from outside C++)
  try {
#ifdef UNTORN_TEST_HOOKS
    if (hooks_ && hooks_->before_writeback_io) hooks_->before_writeback_io();
#endif
    writes.resize(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) {
      const Op& op = ops[i];
      writes[i].offset = op.offset;
      writes[i].atomic = op.atomic;
      writes[i].data = op.pieces.size() == 1
                           ? std::span<const std::byte>(op.pieces[0].folio->block_data(op.pieces[0].first), op.length)
                           : op.bounce.span();
    }
    writer_.write_batch(writes, fua);
  } catch (...) {  // the sync after the batch failed (nothing is known durable), or no memory
    batch_failed = true;
    batch_failure = std::current_exception();
  }
  constexpr size_t kNone = SIZE_MAX;
  size_t first_failed = kNone;
  uint64_t written = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    Op& op = ops[i];
    const bool own_error = i < writes.size() && writes[i].error != 0;
    const bool ok = !own_error && !batch_failed;
    if (!ok && first_failed == kNone) first_failed = i;
    for (Piece& p : op.pieces) {
#ifdef UNTORN_TEST_HOOKS
      if (&p != &op.pieces.front() && hooks_ && hooks_->between_piece_completions)
        hooks_->between_piece_completions();
#endif
      {
        std::lock_guard fl(p.folio->mutex());
        p.folio->set(Folio::writeback, p.first, p.first + p.count, false);
        if (ok) {
          p.folio->set(Folio::joined, p.first, p.first + p.count, false);
          p.folio->set(Folio::atomic, p.first, p.first + p.count, false);
        } else {
          p.folio->set(Folio::dirty, p.first, p.first + p.count, true);
        }
      }
      // A failed group is dirty again: register it (a writer may have cleaned and
      // unlisted the folio since the bits changed).
      if (ok) cache_.mark_clean(*p.folio);
      else cache_.mark_dirty(*p.folio);
    }
    if (ok) {
      written += op.length;
      dirty_bytes_.fetch_sub(op.length);
    }
  }
  stats_.add(stats_.writeback_bytes, written);
  stats_.add(stats_.writeback_groups, ops.size());
  stats_.add(stats_.writeback_batches);
  if (first_failed == kNone) return;
  std::string first_error;
  try {
    if (first_failed < writes.size() && writes[first_failed].error) first_error = writes[first_failed].message;
    else first_error = describe(batch_failure);
  } catch (...) {  // no memory for the message: the failure is recorded all the same
  }
  // A request's own write-through fails that request; the next flush retries what stays
  // dirty. Writeback no request waits for is reported by the next flush (R1).
  stats_.add(stats_.writeback_errors);
  // Counted even when a request takes the error itself: a flush running meanwhile may
  // have skipped these groups while they were under writeback, and they are dirty again.
  if (!dropped) record_error(first_error);
  failure_log_.warn("writeback", "writeback failed, the data stays dirty: " + first_error);
  throw IoError(EIO, "writeback failed: " + first_error);
}

std::string Writeback::describe(const std::exception_ptr& failure) {
  if (!failure) return "writeback failed: an exception from outside C++";
  try {
    std::rethrow_exception(failure);
  } catch (const IoError& e) {
    return e.what();
  } catch (const std::bad_alloc&) {
    return "writeback ran out of memory";
  } catch (const std::exception& e) {
    return std::string("writeback failed: ") + e.what();
  } catch (...) {
    return "writeback failed: an unknown exception";
  }
}

void Writeback::write_range(uint64_t lo, uint64_t hi, bool fua, bool dropped) {
  std::vector<Op> ops;
  const uint64_t seq = begin_batch();
  try {
    collect(lo, hi, UINT64_MAX, false, ops);
  } catch (...) {
    abandon(ops, seq, dropped);
    throw;
  }
  submit(ops, seq, fua, dropped);
}

void Writeback::wait_idle(uint64_t begin, uint64_t end) {
  // Blocks are under writeback only inside a batch; with none running there is nothing to
  // wait for, and none can start on this range while the caller holds it.
  if (batches_running_.load() == 0) return;
  for (;;) {
    const uint64_t seen = completions_.load();
    if (!cache_.any_block(begin, end - begin, Folio::writeback)) return;
#ifdef UNTORN_TEST_HOOKS
    if (hooks_ && hooks_->on_wait_for_writeback) hooks_->on_wait_for_writeback();
#endif
    std::unique_lock lk(state_mutex_);
    wait_progress(lk, [&] { return completions_.load() != seen; });
  }
}

RangeLock::Guard Writeback::lock_for_collect(const Folio& f, std::vector<Op>& ops, uint64_t* seq) {
  // Groups touching this folio reach at most A - block beyond it on either side. Shared:
  // no request is half copied into what we take.
  const uint64_t A = options_.atomic_write_unit_max;
  const uint64_t from = f.offset() > A ? f.offset() - A : 0;
  const uint64_t length = f.end() + A - from;
  if (!ops.empty()) {
    if (auto guard = locks_.try_lock(from, length, RangeLock::Mode::shared)) return std::move(*guard);
    const uint64_t next = begin_batch();  // may throw: before `ops` leaves the caller's hands
    std::vector<Op> ready;
    ready.swap(ops);
    const uint64_t done = std::exchange(*seq, next);
    submit(ready, done, false);
  }
  return locks_.lock(from, length, RangeLock::Mode::shared);
}

uint64_t Writeback::write_some(uint64_t max_bytes, bool expired_only) {
  thread_local size_t cursor = 0;  // trivially destructible: safe in nbdkit's threads
  uint64_t total = 0;
  std::vector<Op> ops;
  uint64_t seq = begin_batch();
  try {
    for (uint64_t offset : cache_.dirty_offsets(256, &cursor)) {
      if (total >= max_bytes) break;
      FolioCache::Ref f = cache_.find(offset, false);
      if (!f) continue;
#ifdef UNTORN_TEST_HOOKS
      if (hooks_ && hooks_->before_collecting_folio) hooks_->before_collecting_folio();
#endif
      // Shared: no request is half copied into what we take. Groups starting in this
      // folio reach at most A - block past its end.
      auto guard = lock_for_collect(*f, ops, &seq);
      total += collect(f->offset(), f->end(), max_bytes - total, expired_only, ops);
    }
  } catch (...) {
    abandon(ops, seq);
    throw;
  }
  submit(ops, seq, false);
  return total;
}

void Writeback::flush() {
  std::string own_error;
  uint64_t unreported_from;
  {
    std::lock_guard lk(state_mutex_);
    unreported_from = reported_upto_;
  }
  // One pass over what is dirty now: data dirtied later is not this flush's business.
  const std::vector<uint64_t> offsets = cache_.all_dirty_offsets();
  for (size_t i = 0; i < offsets.size();) {
    std::vector<Op> ops;
    uint64_t seq = begin_batch();
    uint64_t bytes = 0;
    try {
      for (; i < offsets.size() && bytes < options_.batch_bytes; ++i) {
        FolioCache::Ref f = cache_.find(offsets[i], false);
        if (!f) continue;
#ifdef UNTORN_TEST_HOOKS
        if (hooks_ && hooks_->before_collecting_folio) hooks_->before_collecting_folio();
#endif
        auto guard = lock_for_collect(*f, ops, &seq);
        bytes += collect(f->offset(), f->end(), UINT64_MAX, false, ops);
      }
    } catch (const IoError& e) {  // a batch submitted early failed: report it at the end
      // (Only an early submit throws IoError here, and it had taken `ops` with it.)
      end_batch(seq);  // first: nothing below may keep the batch open
      if (own_error.empty()) own_error = e.what();
      continue;
    } catch (...) {  // out of memory while collecting: give the groups taken back
      abandon(ops, seq);
      // This flush fails: it reports every failure so far, as a failing flush does below.
      std::lock_guard lk(state_mutex_);
      reported_upto_ = std::max(reported_upto_, failures_);
      throw;
    }
    try {
      submit(ops, seq, false);
    } catch (const IoError& e) {
      if (own_error.empty()) own_error = e.what();
    }
  }
  // Writeback that started before now must finish too: its data may predate the flush.
#ifdef UNTORN_TEST_HOOKS
  if (hooks_ && hooks_->before_flush_waits) hooks_->before_flush_waits();
#endif
  std::unique_lock lk(state_mutex_);
  const uint64_t target = next_seq_ - 1;
  wait_progress(lk, [&] { return in_flight_.empty() || *in_flight_.begin() > target; });
  std::string failure = own_error;
  if (failures_ > unreported_from) {
    // Failures since the last one a flush reported (every flush running now fails).
    failure = last_error_.empty() ? std::string("writeback failed (no memory left to say why)") : last_error_;
    reported_upto_ = std::max(reported_upto_, failures_);
  }
  if (!failure.empty())
    throw IoError(EIO, "flush: writeback failed, dirty data kept in the cache: " + failure);
}

void Writeback::throttle() {
  if (dirty_bytes() <= options_.dirty_limit) return;
  stats_.add(stats_.throttle_waits);
  while (dirty_bytes() > options_.dirty_limit)
    if (!help_or_wait()) return;  // nothing to take and nothing running: let it pass
}

bool Writeback::help_or_wait() {
  // One writer at a time writes back; the others wait for it (each writing its own batch
  // would hold a batch of memory apiece and fight over the disk).
  if (wait_for_progress()) return true;
  return write_some(options_.batch_bytes, false) > 0 || wait_for_progress();
}

bool Writeback::wait_for_progress() {
  std::unique_lock lk(state_mutex_);
  if (in_flight_.empty()) return false;
  const uint64_t seen = completions_.load();
  wait_progress(lk, [&] { return completions_.load() != seen; });
  return true;
}

void Writeback::thread_main(unsigned /*index*/) {
  const auto period = std::min<std::chrono::milliseconds>(
      std::chrono::milliseconds(1000), std::max<std::chrono::milliseconds>(options_.expire / 4, std::chrono::milliseconds(10)));
  for (;;) {
    {
      std::unique_lock lk(state_mutex_);
      work_.wait_for(lk, period, [&] {
        return stopping_ || kicked_ || dirty_bytes() > options_.background_bytes;
      });
      if (stopping_) return;
      kicked_ = false;
    }
    try {
      const bool over = dirty_bytes() > options_.background_bytes;
      while (write_some(options_.batch_bytes, !over) > 0) {
        if (!(dirty_bytes() > options_.background_bytes)) break;
        std::lock_guard lk(state_mutex_);
        if (stopping_) return;
      }
    } catch (const std::exception&) {
      // Recorded for the next flush and logged; retried on the next round.
    }
  }
}

}  // namespace untorn
