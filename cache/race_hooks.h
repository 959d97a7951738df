// cache/race_hooks.h — test-only hooks at the extent map's revalidation points.
//
// Compiled in only with UNTORN_TEST_HOOKS (the tests' own build of the cache library);
// the served plugin has none of it. Each `after_*` callback runs in the request's thread
// at the moment a mapping has been taken and no lock is held yet, widening the race
// window so a test can change the allocation there; each `skip_*` switches one check off,
// so a test shows the check matters (DESIGN.md §5). Set before requests run; not
// synchronised.
#pragma once

#include <functional>

namespace untorn {

struct RaceHooks {
  // (1) read miss: the range was probed, its range lock not yet taken again.
  std::function<void()> after_read_map;
  bool skip_read_revalidation = false;
  // (1) read of a gap with no folio: its mapping was taken (under the shared range lock),
  // nothing zero-filled yet.
  std::function<void()> after_read_hole_map;
  // (2) block status: the mappings were taken, the cache not yet looked at.
  std::function<void()> after_status_map;
  bool skip_status_revalidation = false;
  // (3) zero / trim: the range was mapped, its range lock not yet taken.
  std::function<void()> after_zero_map;
  bool skip_zero_revalidation = false;
  // (4) zero / trim: blocks of the range under writeback are not waited for.
  bool skip_wait_for_writeback = false;
  // (4) writeback: runs after a batch was collected, before its I/O; and a request runs
  // on_wait_for_writeback when it is about to wait for writeback of its range.
  std::function<void()> before_writeback_io;
  std::function<void()> on_wait_for_writeback;
  // Groups across folios: writeback completes (or, failed, turns dirty again) a group's
  // pieces one after another; this runs between the first piece and the next.
  std::function<void()> between_piece_completions;
  // Writeback is about to take a group (dirty -> writeback) into its batch; a test throws
  // here to stand for memory running out half way through collecting a batch.
  std::function<void()> before_take_group;
  // A writeback pass (write_some, flush) is about to collect its next folio, with the
  // groups of the folios before it taken into its batch; a test throws here to stand for
  // memory running out between two folios (lock_for_collect beginning the next batch).
  std::function<void()> before_collecting_folio;
  // A flush has passed every group it found dirty and is about to wait for the writeback
  // batches already running (whose groups it passed by).
  std::function<void()> before_flush_waits;
  // A read looked a block up with no lock and no reference (FolioCache::find_held), under
  // its shared range lock, and has not used what it found yet.
  std::function<void()> after_hit_lookup;
  // A write that found a group crossing its edges, or a zero, waits only for writeback of
  // its own blocks, not of the whole widened range (so it may act on a group half completed).
  bool skip_wide_wait = false;
};

}  // namespace untorn
