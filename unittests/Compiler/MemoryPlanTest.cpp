//===- MemoryPlanTest.cpp - the static arena planner ----------------------===//
//
// Buffers alive together never share bytes; a request made of parts (a
// gradient bucket whose slices live from their producer to their reader)
// lends each part's bytes to other buffers outside the part's range.
//
//===----------------------------------------------------------------------===//

#include "llmir/Conversion/MemoryPlan.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

using namespace llmir;

namespace {

constexpr int64_t kAlign = 64;

/// Every part of every request at its planned place: [begin, end) and its
/// live range.
std::vector<BufferSegment> placedParts(const std::vector<BufferRequest> &rs,
                                       const MemoryPlan &plan) {
  std::vector<BufferSegment> out;
  for (size_t i = 0; i < rs.size(); ++i) {
    if (rs[i].segments.empty())
      out.push_back({plan.offsets[i], rs[i].bytes, rs[i].firstUse, rs[i].lastUse});
    for (const BufferSegment &s : rs[i].segments)
      out.push_back({plan.offsets[i] + s.offset, s.bytes, s.firstUse, s.lastUse});
  }
  return out;
}

TEST(MemoryPlanTest, PartsLendTheirBytesOutsideTheirRange) {
  // A 2-part bucket: part 0 alive over [0, 10], part 1 over [5, 10]; a
  // buffer alive over [0, 3] fits in part 1's bytes.
  std::vector<BufferRequest> rs(2);
  rs[0] = {128, 0, 10, {{0, 64, 0, 10}, {64, 64, 5, 10}}};
  rs[1] = {64, 0, 3, {}};
  MemoryPlan plan = planMemory(rs, kAlign);
  EXPECT_EQ(plan.offsets[0], 0);
  EXPECT_EQ(plan.offsets[1], 64);
  EXPECT_EQ(plan.peakBytes, 128);
  // As one buffer alive over [0, 10] it cannot.
  rs[0].segments.clear();
  plan = planMemory(rs, kAlign);
  EXPECT_EQ(plan.peakBytes, 192);
}

TEST(MemoryPlanTest, RandomRequestsNeverOverlapWhileAlive) {
  std::mt19937 rng(7);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  for (int round = 0; round < 50; ++round) {
    std::vector<BufferRequest> rs(60);
    for (BufferRequest &r : rs) {
      r.firstUse = uniform(0, 9000); // spans the planner's time blocks
      r.lastUse = r.firstUse + uniform(0, 5000);
      int parts = static_cast<int>(uniform(0, 4));
      int64_t offset = 0;
      for (int p = 0; p < parts; ++p) {
        int64_t first = uniform(r.firstUse, r.lastUse);
        BufferSegment s{offset, uniform(1, 4) * kAlign, first,
                        uniform(first, r.lastUse)};
        r.segments.push_back(s);
        offset += s.bytes;
      }
      r.bytes = parts ? offset : uniform(1, 300);
    }
    MemoryPlan plan = planMemory(rs, kAlign);
    std::vector<BufferSegment> parts = placedParts(rs, plan);
    for (size_t i = 0; i < rs.size(); ++i) {
      EXPECT_EQ(plan.offsets[i] % kAlign, 0);
      EXPECT_LE(plan.offsets[i] + rs[i].bytes, plan.peakBytes);
    }
    for (size_t a = 0; a < parts.size(); ++a)
      for (size_t b = a + 1; b < parts.size(); ++b) {
        const BufferSegment &x = parts[a], &y = parts[b];
        bool together = !(x.lastUse < y.firstUse || y.lastUse < x.firstUse);
        bool shared = x.offset < y.offset + y.bytes && y.offset < x.offset + x.bytes;
        ASSERT_FALSE(together && shared)
            << "round " << round << ": parts " << a << " and " << b
            << " overlap in bytes and time";
      }
  }
}

} // namespace
