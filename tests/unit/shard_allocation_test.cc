// Tests of cache/ShardAllocation: both forms (run list, bitmap) answer exactly what was
// assigned, checked against a per-granule model; the switch between them; the bitmap's
// fixed cost.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <vector>

#include "cache/shard_allocation.h"

namespace untorn {
namespace {

constexpr uint64_t kG = 4096;

class ShardAllocationTest : public ::testing::Test {
 protected:
  // By default a slice starting away from 0 whose granule count is not a multiple of 32
  // (a bitmap word), so the last word is partial.
  void SetUp() override { reset(kG, 32 * 128 + 7); }  // a 1,032-byte bitmap, or 16 runs
  void reset(uint64_t granule, uint64_t granules) {
    g_ = granule;
    granules_ = granules;
    begin_ = 1024 * 64 * g_;
    end_ = begin_ + granules_ * g_;
    known_.clear();
    known_.place(begin_, end_, g_);
    model_.assign(granules_, std::nullopt);
  }
  void assign(uint64_t g0, uint64_t g1, std::optional<Allocation> state) {
    known_.assign(begin_ + g0 * g_, begin_ + g1 * g_, state);
    for (uint64_t g = g0; g < g1; ++g) model_[g] = state;
  }
  // at() for every granule and a few limits, against the model.
  void expect_matches_model(std::mt19937_64& rng) {
    std::vector<uint64_t> run_end(granules_);  // where the model's run holding g ends
    for (uint64_t g = granules_; g-- > 0;)
      run_end[g] = g + 1 < granules_ && model_[g + 1] == model_[g] ? run_end[g + 1] : g + 1;
    for (uint64_t g = 0; g < granules_; ++g) {
      const uint64_t limit_g = g + 1 + rng() % (granules_ - g) + (rng() % 4 == 0 ? 5 : 0);
      const uint64_t limit = begin_ + limit_g * g_;
      const ShardAllocation::Run run = known_.at(begin_ + g * g_, limit);
      ASSERT_EQ(run.state, model_[g]) << "granule " << g << (known_.is_bitmap() ? " (bitmap)" : " (list)");
      const uint64_t e = std::min(run_end[g], limit_g);
      ASSERT_EQ(run.end, begin_ + e * g_) << "granule " << g << " limit " << limit_g
                                          << (known_.is_bitmap() ? " (bitmap)" : " (list)");
    }
  }
  // Random assignments, mostly short (they cut the runs), now and then long (they merge
  // them) and every `rounds`th pass the whole slice; checked after each one.
  void random_assignments(std::mt19937_64& rng, int rounds, int per_round);

  uint64_t g_ = 0, granules_ = 0, begin_ = 0, end_ = 0;
  ShardAllocation known_;
  std::vector<std::optional<Allocation>> model_;
  bool saw_list_with_runs_ = false, saw_bitmap_ = false;
};

std::optional<Allocation> random_state(std::mt19937_64& rng) {
  switch (rng() % 4) {
    case 0: return std::nullopt;
    case 1: return Allocation::data;
    case 2: return Allocation::hole;
    default: return Allocation::zero;
  }
}

void ShardAllocationTest::random_assignments(std::mt19937_64& rng, int rounds, int per_round) {
  for (int round = 0; round < rounds; ++round) {
    for (int op = 0; op < per_round; ++op) {
      const uint64_t g0 = rng() % granules_;
      const uint64_t g1 = g0 + 1 + rng() % std::min<uint64_t>(granules_ - g0, op % 8 == 0 ? 200 : 6);
      assign(g0, g1, random_state(rng));
      saw_list_with_runs_ |= !known_.is_bitmap() && known_.runs() > 1;
      saw_bitmap_ |= known_.is_bitmap();
      expect_matches_model(rng);
      if (HasFatalFailure()) return;
    }
    // The whole slice at once: back to a run list, which fragments again next round.
    assign(0, granules_, round % 2 ? std::optional<Allocation>(Allocation::hole) : std::nullopt);
    EXPECT_FALSE(known_.is_bitmap());
    expect_matches_model(rng);
    if (HasFatalFailure()) return;
  }
}

TEST_F(ShardAllocationTest, RandomAssignmentsMatchAModelInBothForms) {
  std::mt19937_64 rng(3);
  random_assignments(rng, 6, 60);
  EXPECT_TRUE(saw_list_with_runs_);
  EXPECT_TRUE(saw_bitmap_);
}

// L = 512: eight times the granules for the same bytes, the same words and masks.
TEST_F(ShardAllocationTest, GranulesOf512BytesMatchAModelInBothForms) {
  reset(512, 32 * 128 + 13);
  std::mt19937_64 rng(4);
  random_assignments(rng, 4, 60);
  EXPECT_TRUE(saw_list_with_runs_);
  EXPECT_TRUE(saw_bitmap_);
}

// A slice of 9 granules: its bitmap (one word) is smaller than two list nodes, so the
// list holds one run at most and the bitmap takes over at the second.
TEST_F(ShardAllocationTest, ATinySliceHoldsOneRunThenBecomesABitmap) {
  reset(kG, 9);
  std::mt19937_64 rng(6);
  assign(2, 4, Allocation::data);
  EXPECT_FALSE(known_.is_bitmap());
  EXPECT_EQ(known_.runs(), 1u);
  assign(6, 7, Allocation::hole);
  EXPECT_TRUE(known_.is_bitmap());
  EXPECT_EQ(known_.memory_bytes(), 8u);
  expect_matches_model(rng);
  random_assignments(rng, 3, 30);
}

TEST_F(ShardAllocationTest, ARunListBecomesABitmapPastItsLimitAndKeepsEveryRun) {
  std::mt19937_64 rng(5);
  assign(0, granules_, Allocation::hole);
  // Every other granule data from 1 on: 2 runs per write, so the list passes its limit
  // (here at 16: past that the list would cost more than the 1,032-byte bitmap).
  uint64_t g = 1;
  for (; !known_.is_bitmap(); g += 2) {
    ASSERT_LE(known_.runs(), ShardAllocation::kMaxRuns);
    ASSERT_LE(known_.memory_bytes(), (granules_ + 31) / 32 * 8);
    assign(g, g + 1, Allocation::data);
    ASSERT_LT(g, granules_);
  }
  EXPECT_EQ(known_.runs(), 0u);
  EXPECT_EQ(known_.memory_bytes(), (granules_ + 31) / 32 * 8);
  expect_matches_model(rng);
}

TEST_F(ShardAllocationTest, ABitmapCostsTheSameHoweverFragmented) {
  std::mt19937_64 rng(9);
  assign(0, granules_, Allocation::hole);
  for (uint64_t g = 0; g < 40; ++g) assign(2 * g, 2 * g + 1, Allocation::data);
  ASSERT_TRUE(known_.is_bitmap());
  const uint64_t bytes = known_.memory_bytes();
  for (int i = 0; i < 2000; ++i) {
    const uint64_t g0 = rng() % granules_;
    assign(g0, g0 + 1, random_state(rng));
  }
  EXPECT_EQ(known_.memory_bytes(), bytes);
  expect_matches_model(rng);
  known_.clear();
  EXPECT_EQ(known_.memory_bytes(), 0u);
  EXPECT_FALSE(known_.at(begin_, end_).state.has_value());
  EXPECT_EQ(known_.at(begin_, end_).end, end_);
}

}  // namespace
}  // namespace untorn
