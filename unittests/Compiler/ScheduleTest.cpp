//===- ScheduleTest.cpp - pipeline schedules vs PIPELINE-NOTES.md ---------===//
//
// The worked examples of PIPELINE-NOTES.md (orders and makespans), the
// analytic bubbles, deadlock/FIFO/memory diagnostics and the text format.
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Pipeline/Schedule.h"

#include "llvm/ADT/StringExtras.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace llmir::pipeline;

namespace {

/// The rank's list as "F0s0 F1s0 ...".
std::string row(const Schedule &s, int rank) {
  std::string out;
  for (const Action &a : s.ranks[rank])
    out += (out.empty() ? "" : " ") + formatAction(a);
  return out;
}

Schedule build(llvm::Expected<Schedule> s) {
  EXPECT_TRUE(bool(s)) << (s ? "" : llvm::toString(s.takeError()));
  return std::move(*s);
}

SimResult run(const Schedule &s, const Costs &c) {
  llvm::Expected<SimResult> r = simulate(s, c);
  EXPECT_TRUE(bool(r)) << (r ? "" : llvm::toString(r.takeError()));
  return std::move(*r);
}

std::string errorOf(llvm::Error err) {
  return err ? llvm::toString(std::move(err)) : std::string("<success>");
}

TEST(Schedule, OneFOneBP4M8) {
  Schedule s = build(make1F1B(4, 8));
  EXPECT_EQ(row(s, 0), "F0s0 F1s0 F2s0 F3s0 B0s0 F4s0 B1s0 F5s0 B2s0 F6s0 "
                       "B3s0 F7s0 B4s0 B5s0 B6s0 B7s0");
  EXPECT_EQ(row(s, 3), "F0s3 B0s3 F1s3 B1s3 F2s3 B2s3 F3s3 B3s3 F4s3 B4s3 "
                       "F5s3 B5s3 F6s3 B6s3 F7s3 B7s3");
  EXPECT_EQ(errorOf(verifySchedule(s)), "<success>");
  SimResult r = run(s, {1, 2});
  EXPECT_DOUBLE_EQ(r.makespan, 33);
  EXPECT_DOUBLE_EQ(r.bubbleFraction, 3.0 / 11); // (p-1)/(m+p-1)
  EXPECT_DOUBLE_EQ(r.bubbleFraction, analyticBubbleFraction("1f1b", 4, 8, 1,
                                                            {1, 2}));
  EXPECT_EQ(r.peakInFlight, (llvm::SmallVector<int>{4, 3, 2, 1}));
  for (double busy : r.busy)
    EXPECT_DOUBLE_EQ(busy, 24);
}

TEST(Schedule, GPipeSameBubbleMoreMemory) {
  Schedule s = build(makeGPipe(4, 8));
  EXPECT_EQ(row(s, 2), "F0s2 F1s2 F2s2 F3s2 F4s2 F5s2 F6s2 F7s2 B0s2 B1s2 "
                       "B2s2 B3s2 B4s2 B5s2 B6s2 B7s2");
  EXPECT_EQ(errorOf(verifySchedule(s)), "<success>");
  SimResult r = run(s, {1, 2});
  EXPECT_DOUBLE_EQ(r.makespan, 33);
  EXPECT_EQ(r.peakInFlight, (llvm::SmallVector<int>{8, 8, 8, 8}));
  EXPECT_NE(errorOf(verifySchedule(s, {/*maxInFlight=*/4})).find(
                "rank 0 step 7 (F7s0): 8 micro-batch activations in flight, "
                "the bound is 4"),
            std::string::npos);
}

TEST(Schedule, InterleavedP2V2M4) {
  Schedule s = build(makeInterleaved1F1B(2, 4, 2));
  EXPECT_EQ(row(s, 0), "F0s0 F1s0 F0s2 F1s2 F2s0 B0s2 F3s0 B1s2 F2s2 B0s0 "
                       "F3s2 B1s0 B2s2 B3s2 B2s0 B3s0");
  EXPECT_EQ(row(s, 1), "F0s1 F1s1 F0s3 B0s3 F1s3 B1s3 F2s1 B0s1 F3s1 B1s1 "
                       "F2s3 B2s3 F3s3 B3s3 B2s1 B3s1");
  EXPECT_EQ(errorOf(verifySchedule(s)), "<success>");
  // Chunk costs are t/v: 0.5 and 1, as in the notes.
  SimResult r = run(s, {1, 2});
  EXPECT_DOUBLE_EQ(r.makespan, 13.5);
  EXPECT_DOUBLE_EQ(r.makespan - 12, (2 - 1) * 3.0 / 2); // (p-1)(tf+tb)/v
  EXPECT_DOUBLE_EQ(r.bubbleFraction,
                   analyticBubbleFraction("interleaved", 2, 4, 2, {1, 2}));
}

TEST(Schedule, InterleavedP4V2M8) {
  Schedule s = build(makeInterleaved1F1B(4, 8, 2));
  EXPECT_EQ(errorOf(verifySchedule(s)), "<success>");
  SimResult r = run(s, {1, 2});
  EXPECT_DOUBLE_EQ(r.makespan, 28.5);
  EXPECT_DOUBLE_EQ(r.bubbleFraction,
                   analyticBubbleFraction("interleaved", 4, 8, 2, {1, 2}));
  // W_r + 1 chunk activations: 2(p-r-1) + (v-1)p + 1.
  EXPECT_EQ(r.peakInFlight, (llvm::SmallVector<int>{11, 9, 7, 5}));
}

TEST(Schedule, InterleavedRejectsMegatronDivisibility) {
  auto s = makeInterleaved1F1B(4, 10, 2);
  ASSERT_FALSE(bool(s));
  EXPECT_EQ(llvm::toString(s.takeError()),
            "interleaved: microbatches (10) must be a multiple of pp (4); "
            "otherwise the last micro-batch group has dependency bubbles");
  auto few = makeInterleaved1F1B(4, 2, 2);
  ASSERT_FALSE(bool(few));
  EXPECT_EQ(llvm::toString(few.takeError()),
            "interleaved: needs microbatches >= pp, found microbatches=2 pp=4");
  auto v1 = makeInterleaved1F1B(4, 8, 1);
  ASSERT_FALSE(bool(v1));
  llvm::consumeError(v1.takeError());
}

TEST(Schedule, ZBH1P4M8) {
  Schedule s = build(makeZBH1(4, 8));
  EXPECT_EQ(row(s, 0), "F0s0 F1s0 F2s0 F3s0 I0s0 W0s0 F4s0 I1s0 W1s0 F5s0 "
                       "I2s0 W2s0 F6s0 I3s0 W3s0 F7s0 I4s0 W4s0 I5s0 W5s0 "
                       "I6s0 W6s0 I7s0 W7s0");
  EXPECT_EQ(row(s, 1), "F0s1 F1s1 F2s1 I0s1 F3s1 I1s1 W0s1 F4s1 I2s1 W1s1 "
                       "F5s1 I3s1 W2s1 F6s1 I4s1 W3s1 F7s1 I5s1 W4s1 I6s1 "
                       "W5s1 I7s1 W6s1 W7s1");
  EXPECT_EQ(row(s, 3), "F0s3 I0s3 F1s3 I1s3 F2s3 I2s3 F3s3 I3s3 W0s3 F4s3 "
                       "I4s3 W1s3 F5s3 I5s3 W2s3 F6s3 I6s3 W3s3 F7s3 I7s3 "
                       "W4s3 W5s3 W6s3 W7s3");
  EXPECT_EQ(errorOf(verifySchedule(s)), "<success>");
  Costs c{1, 2, 1, 1};
  SimResult r = run(s, c);
  EXPECT_DOUBLE_EQ(r.makespan, 27);
  EXPECT_DOUBLE_EQ(r.makespan - 24, 3 * (1 + 1 - 1)); // (p-1)(tF+tI-tW)
  EXPECT_DOUBLE_EQ(r.bubbleFraction,
                   analyticBubbleFraction("zb-h1", 4, 8, 1, c));
}

TEST(Schedule, BubblesMatchFormulas) {
  for (int p : {2, 4, 8}) {
    for (int m : {8, 16}) {
      for (llvm::StringRef name : {"gpipe", "1f1b", "interleaved", "zb-h1"}) {
        int v = name == "interleaved" ? 2 : 1;
        Schedule s = build(makeSchedule(name, p, m, v));
        EXPECT_EQ(errorOf(verifySchedule(s)), "<success>");
        Costs c{1, 2, 1, 1};
        SimResult r = run(s, c);
        EXPECT_NEAR(r.bubbleFraction, analyticBubbleFraction(name, p, m, v, c),
                    1e-12)
            << name.str() << " p=" << p << " m=" << m;
        if (name != "interleaved" && name != "zb-h1") {
          EXPECT_NEAR(r.bubbleFraction, double(p - 1) / (m + p - 1), 1e-12);
        }
      }
    }
  }
}

TEST(Schedule, DeadlockNamesRankAndStep) {
  // 1F1B p=4 m=8 with "F1 B0" swapped on rank 2 and "B0 F1" on rank 3: rank
  // 2 waits for rank 3's B0 while rank 3 waits for rank 2's F1.
  Schedule s = build(make1F1B(4, 8));
  std::swap(s.ranks[2][1], s.ranks[2][2]);
  std::swap(s.ranks[3][1], s.ranks[3][2]);
  EXPECT_EQ(errorOf(verifySchedule(s)),
            "deadlock: no rank can progress: rank 0 step 4 (B0s0) waits for "
            "B0s1 on rank 1; rank 1 step 3 (B0s1) waits for B0s2 on rank 2; "
            "rank 2 step 1 (B0s2) waits for B0s3 on rank 3; rank 3 step 1 "
            "(F1s3) waits for F1s2 on rank 2");
  auto sim = simulate(s, {});
  ASSERT_FALSE(bool(sim));
  EXPECT_NE(llvm::toString(sim.takeError()).find("deadlock"),
            std::string::npos);
}

TEST(Schedule, SwappedBackwardsBreakMessageOrder) {
  // Swapping two B's on rank 0 does not deadlock (rank 1 still progresses)
  // but rank 0 would receive B1's gradient where it expects B0's.
  Schedule s = build(make1F1B(4, 8));
  std::swap(s.ranks[0][4], s.ranks[0][6]); // B0s0 <-> B1s0
  EXPECT_EQ(errorOf(verifySchedule(s)),
            "rank 0 step 4 (B1s0): message #0 from rank 1 is the gradient of "
            "micro-batch 0 stage 1, but this step expects micro-batch 1 stage "
            "1 (messages between two ranks arrive in order)");
}

TEST(Schedule, StructuralErrors) {
  Schedule s = build(make1F1B(2, 2));
  Schedule missing = s;
  missing.ranks[1].pop_back();
  EXPECT_EQ(errorOf(verifySchedule(missing)), "rank 1 has no B1s1 (nor an "
                                              "I + W)");
  Schedule wrongRank = s;
  wrongRank.ranks[0][0].stage = 1;
  EXPECT_EQ(errorOf(verifySchedule(wrongRank)),
            "rank 0 step 0 (F0s1): stage 1 belongs to rank 1");
  Schedule early = s;
  std::swap(early.ranks[1][0], early.ranks[1][1]);
  EXPECT_EQ(errorOf(verifySchedule(early)),
            "rank 1 step 0 (B0s1): runs before F0s1");
}

TEST(Schedule, TextRoundTrip) {
  for (llvm::StringRef name : {"gpipe", "1f1b", "interleaved", "zb-h1"}) {
    Schedule s = build(makeSchedule(name, 4, 8, name == "interleaved" ? 2 : 1));
    std::string text = printSchedule(s);
    Schedule back = build(parseSchedule(text));
    EXPECT_EQ(back.numRanks, s.numRanks);
    EXPECT_EQ(back.numMicrobatches, s.numMicrobatches);
    EXPECT_EQ(back.chunksPerRank, s.chunksPerRank);
    EXPECT_EQ(back.ranks, s.ranks);
    EXPECT_EQ(printSchedule(back), text);
  }
  EXPECT_EQ(printSchedule(build(parseSchedule(
                "# two ranks\nrank 0: F0s0 B0s0\n\nrank 1: F0s1 B0s1 # x\n"))),
            "rank 0: F0s0 B0s0\nrank 1: F0s1 B0s1\n");
  auto bad = parseSchedule("rank 0: F0s0 X1s0\n");
  ASSERT_FALSE(bool(bad));
  EXPECT_EQ(llvm::toString(bad.takeError()),
            "line 1: bad action 'X1s0' (expected F|B|I|W<microbatch>s<stage>, "
            "e.g. F0s1)");
  auto order = parseSchedule("rank 1: F0s1\n");
  ASSERT_FALSE(bool(order));
  EXPECT_EQ(llvm::toString(order.takeError()),
            "line 1: expected rank 0, found rank 1");
}

TEST(Schedule, SVGHasOneBoxPerAction) {
  Schedule s = build(make1F1B(4, 8));
  SimResult r = run(s, {1, 2});
  std::string svg = renderSVG(s, r);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  size_t boxes = 0;
  for (size_t pos = 0; (pos = svg.find("<title>rank", pos)) != std::string::npos;
       ++pos)
    ++boxes;
  EXPECT_EQ(boxes, 4u * 16);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

/// Widths of the action boxes of an SVG.
std::vector<double> boxWidths(const std::string &svg) {
  std::vector<double> widths;
  for (size_t pos = 0; (pos = svg.find("<rect x=", pos)) != std::string::npos; ++pos) {
    size_t end = svg.find('>', pos);
    if (svg.find("<title>", end) != end + 1)
      continue; // a legend square
    size_t w = svg.find("width=\"", pos) + 7;
    widths.push_back(std::stod(svg.substr(w, svg.find('"', w) - w)));
  }
  return widths;
}

TEST(Schedule, SVGScalesAnyMakespanToItsWidth) {
  // A simulated step in seconds (here ~1.5 ms) is drawn as wide as one in
  // cost units: the scale follows the makespan, the axis says the unit.
  Schedule s = build(make1F1B(4, 8));
  Costs seconds;
  seconds.tF = 5e-5;
  seconds.tB = 1e-4;
  SimResult r = run(s, seconds);
  std::string svg = renderSVG(s, r, "s");
  std::vector<double> widths = boxWidths(svg);
  ASSERT_EQ(widths.size(), 4u * 16);
  EXPECT_GT(*std::min_element(widths.begin(), widths.end()), 10.0);
  EXPECT_NE(svg.find(" ms</text>"), std::string::npos) << "ticks in milliseconds";
  std::string units = renderSVG(s, run(s, {1, 2}));
  EXPECT_NE(units.find("(time units)"), std::string::npos);
  EXPECT_EQ(units.find("chunk 1"), std::string::npos) << "no chunk legend without vpp";
}

TEST(Schedule, SVGIsAsWideAsItsTitle) {
  // A caption (compare_layouts passes the layout) of any length fits: the
  // picture widens past its 1310 px at 0.6 em per 13 px character; XML
  // metacharacters are escaped.
  Schedule s = build(make1F1B(4, 8));
  std::string caption = std::string(300, 'x') + "<&>";
  std::string svg = renderSVG(s, run(s, {1, 2}), "time units", caption);
  size_t w = svg.find("width=\"") + 7;
  double width = std::stod(svg.substr(w, svg.find('"', w) - w));
  size_t t = svg.find("font-size=\"13\">") + 16;
  size_t titleChars = svg.find("</text>", t) - t - 9; // &lt; &amp; &gt; are 3 chars
  EXPECT_GE(width, 70 + 0.6 * 13 * titleChars);
  EXPECT_NE(svg.find(std::string(300, 'x') + "&lt;&amp;&gt;  1f1b: pp=4"),
            std::string::npos);
  EXPECT_EQ(svg.find("<&>"), std::string::npos);
}

} // namespace
