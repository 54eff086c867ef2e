// Context parallelism's kernels on the CPU: each cp rank's attention (its two
// zig-zag query chunks against the K/V all-gathered over cp, causal mask by
// global positions) and rope (its chunks at their global offsets) give exactly
// the rows of the single-device kernels; the ranks' dK/dV, summed as the
// reduce-scatter does, give the single-device ones.
#include "llmir/runtime/ContextParallel.h"
#include "llmir/runtime/Kernels.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace rt = llmir::runtime;
using llmir::runtime::testing::allClose;
using llmir::runtime::testing::randomVector;

namespace {

/// Rank `r`'s local rows of x ([batch, seq, width]) under `cp` ranks.
std::vector<float> localRows(const std::vector<float> &x, int64_t batch, int64_t seq,
                             int64_t width, const rt::CpChunks &cp) {
  const int64_t local = seq / cp.size;
  std::vector<float> out(static_cast<size_t>(batch * local * width));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < local; ++i)
      for (int64_t d = 0; d < width; ++d)
        out[(b * local + i) * width + d] = x[(b * seq + cp.query(i)) * width + d];
  return out;
}

/// x ([batch, seq, width]) in the all-gathered order: rank 0's rows, rank 1's, ...
std::vector<float> gatheredRows(const std::vector<float> &x, int64_t batch, int64_t seq,
                                int64_t width, const rt::CpChunks &cp) {
  std::vector<float> out(x.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < seq; ++j)
      for (int64_t d = 0; d < width; ++d)
        out[(b * seq + j) * width + d] = x[(b * seq + cp.key(j)) * width + d];
  return out;
}

TEST(ContextParallelKernels, PositionsAreAZigZagPartition) {
  // cp=2, chunks of 3: rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2.
  const rt::CpChunks r0{0, 2, 3}, r1{1, 2, 3};
  EXPECT_EQ(r0.query(0), 0);
  EXPECT_EQ(r0.query(3), 9);
  EXPECT_EQ(r1.query(0), 3);
  EXPECT_EQ(r1.query(5), 8);
  std::vector<int> seen(12, 0);
  for (int64_t j = 0; j < 12; ++j)
    ++seen[r0.key(j)];
  for (int count : seen)
    EXPECT_EQ(count, 1);
  EXPECT_EQ(r1.key(6), 3); // rank 1's first row in the gathered order
}

void checkCpAttention(int64_t cpSize, int64_t heads, int64_t kvHeads) {
  const int64_t B = 2, S = 8 * cpSize, D = 8;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t qW = heads * D, kW = kvHeads * D;
  auto q = randomVector(B * S * qW, 1), k = randomVector(B * S * kW, 2),
       v = randomVector(B * S * kW, 3), dout = randomVector(B * S * qW, 4);
  std::vector<float> o(q.size()), lse(B * heads * S), dq(q.size()), dk(k.size()), dv(v.size());
  ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), o.data(), B, S, heads,
                                   kvHeads, D, scale, true, lse.data())
                  .isOk());
  ASSERT_TRUE(rt::attentionBackward(q.data(), k.data(), v.data(), {}, dout.data(), dq.data(),
                                    dk.data(), dv.data(), B, S, heads, kvHeads, D, scale, true)
                  .isOk());
  const int64_t local = S / cpSize;
  const rt::CpChunks order{0, cpSize, local / 2};
  const auto kAll = gatheredRows(k, B, S, kW, order), vAll = gatheredRows(v, B, S, kW, order);
  std::vector<float> dkSum(k.size(), 0.0f), dvSum(v.size(), 0.0f);
  for (int64_t r = 0; r < cpSize; ++r) {
    SCOPED_TRACE("cp rank " + std::to_string(r) + " of " + std::to_string(cpSize));
    const rt::CpChunks cp{r, cpSize, local / 2};
    const auto qr = localRows(q, B, S, qW, cp), dor = localRows(dout, B, S, qW, cp);
    std::vector<float> or_(qr.size()), lser(B * heads * local);
    ASSERT_TRUE(rt::attentionForward(qr.data(), kAll.data(), vAll.data(), or_.data(), B, local,
                                     heads, kvHeads, D, scale, true, lser.data(), cp)
                    .isOk());
    EXPECT_TRUE(allClose(or_, localRows(o, B, S, qW, cp), 1e-6, 1e-5)) << "output";
    // Both backward forms: recomputed and from the saved forward.
    for (bool saved : {false, true}) {
      std::vector<float> dqr(qr.size()), dkr(k.size()), dvr(v.size());
      rt::AttentionSaved s = saved ? rt::AttentionSaved{or_.data(), lser.data()}
                                   : rt::AttentionSaved{};
      ASSERT_TRUE(rt::attentionBackward(qr.data(), kAll.data(), vAll.data(), s, dor.data(),
                                        dqr.data(), dkr.data(), dvr.data(), B, local, heads,
                                        kvHeads, D, scale, true, cp)
                      .isOk());
      EXPECT_TRUE(allClose(dqr, localRows(dq, B, S, qW, cp), 1e-5, 1e-4)) << "dq " << saved;
      if (saved)
        for (size_t i = 0; i < dkr.size(); ++i) {
          dkSum[i] += dkr[i];
          dvSum[i] += dvr[i];
        }
    }
  }
  EXPECT_TRUE(allClose(dkSum, gatheredRows(dk, B, S, kW, order), 1e-5, 1e-4)) << "dk";
  EXPECT_TRUE(allClose(dvSum, gatheredRows(dv, B, S, kW, order), 1e-5, 1e-4)) << "dv";
}

TEST(ContextParallelKernels, AttentionEqualsSingleDevice) {
  checkCpAttention(2, 4, 4);
  checkCpAttention(2, 4, 2); // GQA
  checkCpAttention(4, 4, 1);
}

/// cp-comm=ring: rank r's ring steps (the pair of rank (r - s) mod cp at step
/// s) give the single-device rows; the dK/dV parts of every rank's steps,
/// summed per pair as the ring carries them home, give the single-device ones.
void checkRingAttention(int64_t cpSize, int64_t heads, int64_t kvHeads, bool causal) {
  const int64_t B = 2, S = 8 * cpSize, D = 8, local = S / cpSize;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t qW = heads * D, kW = kvHeads * D;
  auto q = randomVector(B * S * qW, 11), k = randomVector(B * S * kW, 12),
       v = randomVector(B * S * kW, 13), dout = randomVector(B * S * qW, 14);
  std::vector<float> o(q.size()), lse(B * heads * S), dq(q.size()), dk(k.size()), dv(v.size());
  ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), o.data(), B, S, heads,
                                   kvHeads, D, scale, causal, lse.data())
                  .isOk());
  ASSERT_TRUE(rt::attentionBackward(q.data(), k.data(), v.data(), {}, dout.data(), dq.data(),
                                    dk.data(), dv.data(), B, S, heads, kvHeads, D, scale,
                                    causal)
                  .isOk());
  auto pairOf = [&](const std::vector<float> &x, int64_t r) {
    return localRows(x, B, S, kW, rt::CpChunks{r, cpSize, local / 2});
  };
  std::vector<std::vector<float>> dkHome(cpSize, std::vector<float>(B * local * kW, 0.0f)),
      dvHome = dkHome;
  for (int64_t r = 0; r < cpSize; ++r) {
    SCOPED_TRACE("cp rank " + std::to_string(r) + " of " + std::to_string(cpSize));
    const rt::CpChunks cp{r, cpSize, local / 2};
    const auto qr = localRows(q, B, S, qW, cp), dor = localRows(dout, B, S, qW, cp);
    std::vector<float> or_(qr.size(), NAN), lser(B * heads * local, NAN);
    for (int64_t s = 0; s < cpSize; ++s)
      ASSERT_TRUE(rt::ringAttentionForward(qr.data(), pairOf(k, cp.heldRank(s)).data(),
                                           pairOf(v, cp.heldRank(s)).data(), or_.data(),
                                           lser.data(), B, local, heads, kvHeads, D, scale,
                                           causal, cp, s)
                      .isOk());
    EXPECT_TRUE(allClose(or_, localRows(o, B, S, qW, cp), 1e-6, 1e-5)) << "output";
    std::vector<float> dqr(qr.size(), NAN), dkr(B * local * kW), dvr(dkr.size());
    for (int64_t s = 0; s < cpSize; ++s) {
      const int64_t held = cp.heldRank(s);
      ASSERT_TRUE(rt::ringAttentionBackward(qr.data(), pairOf(k, held).data(),
                                            pairOf(v, held).data(), {or_.data(), lser.data()},
                                            dor.data(), dqr.data(), dkr.data(), dvr.data(), B,
                                            local, heads, kvHeads, D, scale, causal, cp, s)
                      .isOk());
      for (size_t i = 0; i < dkr.size(); ++i) {
        dkHome[held][i] += dkr[i];
        dvHome[held][i] += dvr[i];
      }
    }
    EXPECT_TRUE(allClose(dqr, localRows(dq, B, S, qW, cp), 1e-5, 1e-4)) << "dq";
  }
  for (int64_t r = 0; r < cpSize; ++r) {
    EXPECT_TRUE(allClose(dkHome[r], pairOf(dk, r), 1e-5, 1e-4)) << "dk of rank " << r;
    EXPECT_TRUE(allClose(dvHome[r], pairOf(dv, r), 1e-5, 1e-4)) << "dv of rank " << r;
  }
}

TEST(ContextParallelKernels, RingAttentionEqualsSingleDevice) {
  checkRingAttention(2, 4, 4, true);
  checkRingAttention(2, 4, 2, true); // GQA
  checkRingAttention(3, 2, 1, true);
  checkRingAttention(4, 4, 1, true);
  checkRingAttention(2, 2, 2, false);
}

TEST(ContextParallelKernels, RingSkipsTheChunksAQueryNeverSees) {
  // cp=4, rank 1 (chunks 1 and 6): step 0 its own pair (diagonal, whole,
  // diagonal); step 1 rank 0's pair (chunks 0, 7): chunk 0 whole for both
  // query chunks, chunk 7 never; step 3 rank 2's (chunks 2, 5): only the
  // second query chunk (6), both whole.
  using Sees = rt::CpChunks::Sees;
  const rt::CpChunks cp{1, 4, 3};
  EXPECT_EQ(cp.sees(0, 0, 0, true), Sees::Diagonal);
  EXPECT_EQ(cp.sees(0, 0, 1, true), Sees::None);
  EXPECT_EQ(cp.sees(0, 1, 0, true), Sees::Whole);
  EXPECT_EQ(cp.sees(0, 1, 1, true), Sees::Diagonal);
  EXPECT_EQ(cp.heldRank(1), 0);
  EXPECT_EQ(cp.sees(1, 0, 0, true), Sees::Whole);
  EXPECT_EQ(cp.sees(1, 0, 1, true), Sees::None);
  EXPECT_EQ(cp.sees(1, 1, 1, true), Sees::None);
  EXPECT_EQ(cp.heldRank(3), 2);
  EXPECT_EQ(cp.sees(3, 0, 0, true), Sees::None);
  EXPECT_EQ(cp.sees(3, 0, 1, true), Sees::None);
  EXPECT_EQ(cp.sees(3, 1, 0, true), Sees::Whole);
  EXPECT_EQ(cp.sees(3, 1, 1, true), Sees::Whole);
}

TEST(ContextParallelKernels, RopeChunksAtGlobalOffsets) {
  const int64_t S = 16, H = 2, D = 8, local = S / 2;
  auto x = randomVector(S * H * D, 5);
  std::vector<float> y(x.size());
  ASSERT_TRUE(rt::ropeForward(x.data(), y.data(), 1, S, H, D, 10000.0, 0).isOk());
  for (int64_t r = 0; r < 2; ++r) {
    const rt::CpChunks cp{r, 2, local / 2};
    auto xr = localRows(x, 1, S, H * D, cp);
    std::vector<float> yr(xr.size());
    for (int h = 0; h < 2; ++h) {
      const int64_t at = h * cp.chunk * H * D;
      ASSERT_TRUE(rt::ropeForward(xr.data() + at, yr.data() + at, 1, cp.chunk, H, D, 10000.0,
                                  cp.chunkStart(h))
                      .isOk());
    }
    EXPECT_TRUE(allClose(yr, localRows(y, 1, S, H * D, cp), 1e-6, 1e-5)) << "rank " << r;
  }
}

TEST(ContextParallelKernels, AttentionRejectsChunksThatDoNotFit) {
  std::vector<float> q(2 * 6 * 4), kv(2 * 12 * 4), o(q.size());
  const rt::CpChunks bad{0, 2, 2}; // two chunks of 2 are not 6 local rows
  rt::Status st = rt::attentionForward(q.data(), kv.data(), kv.data(), o.data(), 2, 6, 1, 1, 4,
                                       0.5f, true, nullptr, bad);
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("context-parallel"), std::string::npos) << st.message();
}

} // namespace
