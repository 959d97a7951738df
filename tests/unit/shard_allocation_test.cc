// Tests of cache/ShardAllocation: both forms (run list, bitmap) answer exactly what was
// assigned, checked against a per-granule model; the switch between them; the bitmap's
// fixed cost.
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <vector>

#include "cache/shard_allocation.h"

namespace untorn {
namespace {

constexpr uint64_t kG = 4096;

class ShardAllocationTest : public ::testing::Test {
 protected:
  // A slice starting away from 0 whose granule count is not a multiple of 32 (a bitmap
  // word), so the last word is partial.
  static constexpr uint64_t kBegin = 64 * kG * 1024;
  static constexpr uint64_t kGranules = 32 * 128 + 7;  // a 1,032-byte bitmap, or 16 runs
  static constexpr uint64_t kEnd = kBegin + kGranules * kG;

  void SetUp() override {
    known_.place(kBegin, kEnd, kG);
    model_.assign(kGranules, std::nullopt);
  }
  void assign(uint64_t g0, uint64_t g1, std::optional<Allocation> state) {
    known_.assign(kBegin + g0 * kG, kBegin + g1 * kG, state);
    for (uint64_t g = g0; g < g1; ++g) model_[g] = state;
  }
  // at() for every granule and a few limits, against the model.
  void expect_matches_model(std::mt19937_64& rng) {
    for (uint64_t g = 0; g < kGranules; ++g) {
      const uint64_t limit_g = g + 1 + rng() % (kGranules - g) + (rng() % 4 == 0 ? 5 : 0);
      const uint64_t limit = kBegin + limit_g * kG;
      const ShardAllocation::Run run = known_.at(kBegin + g * kG, limit);
      ASSERT_EQ(run.state, model_[g]) << "granule " << g << (known_.is_bitmap() ? " (bitmap)" : " (list)");
      uint64_t e = g;
      while (e < kGranules && e < limit_g && model_[e] == model_[g]) ++e;
      ASSERT_EQ(run.end, kBegin + e * kG) << "granule " << g << " limit " << limit_g
                                          << (known_.is_bitmap() ? " (bitmap)" : " (list)");
    }
  }

  ShardAllocation known_;
  std::vector<std::optional<Allocation>> model_;
};

std::optional<Allocation> random_state(std::mt19937_64& rng) {
  switch (rng() % 4) {
    case 0: return std::nullopt;
    case 1: return Allocation::data;
    case 2: return Allocation::hole;
    default: return Allocation::zero;
  }
}

TEST_F(ShardAllocationTest, RandomAssignmentsMatchAModelInBothForms) {
  std::mt19937_64 rng(3);
  bool saw_list_with_runs = false, saw_bitmap = false;
  for (int round = 0; round < 6; ++round) {
    for (int op = 0; op < 60; ++op) {
      const uint64_t g0 = rng() % kGranules;
      // Mostly short ranges, which cut the runs; now and then a long one, which merges them.
      const uint64_t g1 = g0 + 1 + rng() % std::min<uint64_t>(kGranules - g0, op % 8 == 0 ? 200 : 6);
      assign(g0, g1, random_state(rng));
      saw_list_with_runs |= !known_.is_bitmap() && known_.runs() > 2;
      saw_bitmap |= known_.is_bitmap();
      expect_matches_model(rng);
      if (HasFatalFailure()) return;
    }
    // The whole slice at once: back to a run list, which fragments again next round.
    assign(0, kGranules, round % 2 ? std::optional<Allocation>(Allocation::hole) : std::nullopt);
    EXPECT_FALSE(known_.is_bitmap());
    expect_matches_model(rng);
    if (HasFatalFailure()) return;
  }
  EXPECT_TRUE(saw_list_with_runs);
  EXPECT_TRUE(saw_bitmap);
}

TEST_F(ShardAllocationTest, ARunListBecomesABitmapPastItsLimitAndKeepsEveryRun) {
  std::mt19937_64 rng(5);
  assign(0, kGranules, Allocation::hole);
  // Every other granule data from 1 on: 2 runs per write, so the list passes its limit
  // (here at 16: past that the list would cost more than the 1,032-byte bitmap).
  uint64_t g = 1;
  for (; !known_.is_bitmap(); g += 2) {
    ASSERT_LE(known_.runs(), ShardAllocation::kMaxRuns);
    ASSERT_LE(known_.memory_bytes(), (kGranules + 31) / 32 * 8);
    assign(g, g + 1, Allocation::data);
    ASSERT_LT(g, kGranules);
  }
  EXPECT_EQ(known_.runs(), 0u);
  EXPECT_EQ(known_.memory_bytes(), (kGranules + 31) / 32 * 8);
  expect_matches_model(rng);
}

TEST_F(ShardAllocationTest, ABitmapCostsTheSameHoweverFragmented) {
  std::mt19937_64 rng(9);
  assign(0, kGranules, Allocation::hole);
  for (uint64_t g = 0; g < 40; ++g) assign(2 * g, 2 * g + 1, Allocation::data);
  ASSERT_TRUE(known_.is_bitmap());
  const uint64_t bytes = known_.memory_bytes();
  for (int i = 0; i < 2000; ++i) {
    const uint64_t g0 = rng() % kGranules;
    assign(g0, g0 + 1, random_state(rng));
  }
  EXPECT_EQ(known_.memory_bytes(), bytes);
  expect_matches_model(rng);
  known_.clear();
  EXPECT_EQ(known_.memory_bytes(), 0u);
  EXPECT_FALSE(known_.at(kBegin, kEnd).state.has_value());
  EXPECT_EQ(known_.at(kBegin, kEnd).end, kEnd);
}

}  // namespace
}  // namespace untorn
