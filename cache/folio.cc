#include "cache/folio.h"

#include <bit>

namespace untorn {

Folio::Folio(uint64_t offset, uint32_t size, uint32_t block_size)
    : offset_(offset),
      size_(size),
      block_(block_size),
      words_((size / block_size + 63) / 64),
      data_(FolioMemory::allocate(size)),
      bits_(std::make_unique<std::atomic<uint64_t>[]>(words_ * kBits)) {
  std::set<uint64_t> one{offset};
  listing_node = one.extract(one.begin());
}

uint64_t Folio::memory_cost() const {
  // data + the Folio and its shared_ptr control block (padded to the Folio's 64-byte
  // alignment) + bitmaps + an index map node + its dirty list node.
  return FolioMemory::footprint(size_) + sizeof(Folio) + 64 + words_ * kBits * sizeof(uint64_t) + 64 + 48;
}

void Folio::set(Bit bit, size_t b, size_t e, bool value) {
  size_t* counter = bit == dirty       ? &dirty_blocks_
                    : bit == writeback ? &writeback_blocks_
                    : bit == uptodate  ? &uptodate_blocks_
                                       : nullptr;
  if (counter) {
    const size_t already = count(bit, b, e);
    *counter = value ? *counter + (e - b - already) : *counter - already;
  }
  // Not uptodate any more: said before the bits change (a reader that could see the flag
  // still set holds no range this change overlaps; see folio.h).
  if (bit == uptodate && !value) all_uptodate_.store(false, std::memory_order_relaxed);
  std::atomic<uint64_t>* w = &bits_[bit * words_];
  for (size_t i = b; i < e;) {
    const size_t shift = i % 64;
    const size_t n = std::min<size_t>(64 - shift, e - i);
    const uint64_t mask = (n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1)) << shift;
    const uint64_t old = w[i / 64].load(std::memory_order_relaxed);
    // Release: a block's bytes are in place before it reads as uptodate (only mutex()
    // holders change the words, so a load and a store are enough).
    w[i / 64].store(value ? old | mask : old & ~mask, std::memory_order_release);
    i += n;
  }
  if (bit == uptodate && value && uptodate_blocks_ == blocks())
    all_uptodate_.store(true, std::memory_order_release);
}

bool Folio::uptodate_unlocked(size_t b, size_t e) const {
  if (all_uptodate_.load(std::memory_order_acquire)) return true;
  const std::atomic<uint64_t>* w = &bits_[uptodate * words_];
  for (size_t i = b; i < e;) {
    const size_t shift = i % 64;
    const size_t n = std::min<size_t>(64 - shift, e - i);
    const uint64_t mask = (n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1)) << shift;
    if ((w[i / 64].load(std::memory_order_acquire) & mask) != mask) return false;
    i += n;
  }
  return true;
}

size_t Folio::count(Bit bit, size_t b, size_t e) const {
  const std::atomic<uint64_t>* w = &bits_[bit * words_];
  size_t total = 0;
  for (size_t i = b; i < e;) {
    const size_t shift = i % 64;
    const size_t n = std::min<size_t>(64 - shift, e - i);
    const uint64_t mask = (n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1)) << shift;
    total += static_cast<size_t>(std::popcount(w[i / 64].load(std::memory_order_relaxed) & mask));
    i += n;
  }
  return total;
}

bool Folio::all(Bit bit, size_t b, size_t e) const { return count(bit, b, e) == e - b; }
bool Folio::any(Bit bit, size_t b, size_t e) const { return find(bit, b, e) != e; }

size_t Folio::find(Bit bit, size_t b, size_t e) const {
  const std::atomic<uint64_t>* w = &bits_[bit * words_];
  for (size_t i = b; i < e;) {
    const size_t shift = i % 64;
    const uint64_t word = w[i / 64].load(std::memory_order_relaxed) >> shift;
    if (word) {
      const size_t at = i + static_cast<size_t>(std::countr_zero(word));
      return at < e ? at : e;
    }
    i += 64 - shift;
  }
  return e;
}

}  // namespace untorn
