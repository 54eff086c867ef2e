// CPU KV-cache kernels of text generation checked against the full-sequence
// kernels they must reproduce: a prompt written into the cache and attended
// token by token equals causal attention over the whole sequence; rope_at
// equals rope with the sequence's offset.
#include "llmir/runtime/Kernels.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace rt = llmir::runtime;
using llmir::runtime::StatusCode;
using llmir::runtime::testing::allClose;
using llmir::runtime::testing::randomVector;

namespace {

/// x [batch, seq, heads * dim] rows [from, to) of every sequence.
std::vector<float> rowsOf(const std::vector<float> &x, int64_t batch,
                          int64_t seq, int64_t width, int64_t from, int64_t to) {
  std::vector<float> out;
  for (int64_t b = 0; b < batch; ++b)
    out.insert(out.end(), x.begin() + (b * seq + from) * width,
               x.begin() + (b * seq + to) * width);
  return out;
}

TEST(CpuInferenceTest, CachedDecodeEqualsCausalAttention) {
  // GQA: 4 query heads over 2 kv heads; the cache is longer than the sequence.
  const int64_t batch = 2, seq = 7, heads = 4, kvHeads = 2, dim = 8, maxSeq = 12;
  const int64_t qw = heads * dim, kw = kvHeads * dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  auto q = randomVector(batch * seq * qw, 1);
  auto k = randomVector(batch * seq * kw, 2);
  auto v = randomVector(batch * seq * kw, 3);
  std::vector<float> expected(q.size());
  ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), expected.data(),
                                   batch, seq, heads, kvHeads, dim, scale,
                                   /*causal=*/true, nullptr)
                  .isOk());

  // Prefill the first 3 positions at once, then one token per step; garbage
  // in the cache beyond the current position must not matter.
  const int64_t prompt = 3;
  std::vector<float> kc(batch * kvHeads * maxSeq * dim, 1e3f), vc(kc);
  auto kp = rowsOf(k, batch, seq, kw, 0, prompt), vp = rowsOf(v, batch, seq, kw, 0, prompt);
  ASSERT_TRUE(rt::kvCacheWrite(kp.data(), nullptr, kc.data(), batch, prompt,
                               kvHeads, maxSeq, dim).isOk());
  ASSERT_TRUE(rt::kvCacheWrite(vp.data(), nullptr, vc.data(), batch, prompt,
                               kvHeads, maxSeq, dim).isOk());
  std::vector<int64_t> zero(batch, 0);
  auto qp = rowsOf(q, batch, seq, qw, 0, prompt);
  std::vector<float> outPrompt(qp.size());
  ASSERT_TRUE(rt::cacheAttentionForward(qp.data(), kc.data(), vc.data(),
                                        zero.data(), outPrompt.data(), batch,
                                        prompt, heads, kvHeads, maxSeq, dim, scale)
                  .isOk());
  EXPECT_TRUE(allClose(outPrompt, rowsOf(expected, batch, seq, qw, 0, prompt),
                       1e-5, 1e-5));
  for (int64_t s = prompt; s < seq; ++s) {
    SCOPED_TRACE("position " + std::to_string(s));
    std::vector<int64_t> pos(batch, s);
    auto ks = rowsOf(k, batch, seq, kw, s, s + 1), vs = rowsOf(v, batch, seq, kw, s, s + 1);
    auto qs = rowsOf(q, batch, seq, qw, s, s + 1);
    ASSERT_TRUE(rt::kvCacheWrite(ks.data(), pos.data(), kc.data(), batch, 1,
                                 kvHeads, maxSeq, dim).isOk());
    ASSERT_TRUE(rt::kvCacheWrite(vs.data(), pos.data(), vc.data(), batch, 1,
                                 kvHeads, maxSeq, dim).isOk());
    std::vector<float> out(qs.size());
    ASSERT_TRUE(rt::cacheAttentionForward(qs.data(), kc.data(), vc.data(),
                                          pos.data(), out.data(), batch, 1,
                                          heads, kvHeads, maxSeq, dim, scale)
                    .isOk());
    EXPECT_TRUE(allClose(out, rowsOf(expected, batch, seq, qw, s, s + 1), 1e-5,
                         1e-5));
  }
}

TEST(CpuInferenceTest, PerSequencePositionsAndBounds) {
  const int64_t batch = 2, kvHeads = 1, dim = 2, maxSeq = 4;
  std::vector<float> cache(batch * kvHeads * maxSeq * dim, 0.0f);
  std::vector<float> x = {1, 2, 3, 4};  // one row per sequence
  std::vector<int64_t> pos = {3, 1};
  ASSERT_TRUE(rt::kvCacheWrite(x.data(), pos.data(), cache.data(), batch, 1,
                               kvHeads, maxSeq, dim).isOk());
  EXPECT_EQ(cache[3 * dim], 1.0f);                 // sequence 0, position 3
  EXPECT_EQ(cache[(maxSeq + 1) * dim + 1], 4.0f);  // sequence 1, position 1
  std::vector<int64_t> past = {4, 0};
  rt::Status st = rt::kvCacheWrite(x.data(), past.data(), cache.data(), batch, 1,
                                   kvHeads, maxSeq, dim);
  EXPECT_EQ(st.code(), StatusCode::InvalidArgument);
  EXPECT_NE(st.message().find("--max-seq"), std::string::npos) << st.message();
  std::vector<float> q(batch * dim, 1.0f), out(q.size());
  EXPECT_FALSE(rt::cacheAttentionForward(q.data(), cache.data(), cache.data(),
                                         past.data(), out.data(), batch, 1, 1,
                                         kvHeads, maxSeq, dim, 1.0f)
                   .isOk());
}

TEST(CpuInferenceTest, RopeAtEqualsRopeWithOffset) {
  const int64_t seq = 3, heads = 2, dim = 8, width = heads * dim;
  auto x = randomVector(2 * seq * width, 5);
  std::vector<int64_t> start = {0, 5};
  std::vector<float> y(x.size());
  ASSERT_TRUE(rt::ropeAtForward(x.data(), y.data(), start.data(), 2, seq, heads,
                                dim, 10000.0)
                  .isOk());
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<float> xb(x.begin() + b * seq * width, x.begin() + (b + 1) * seq * width);
    std::vector<float> expected(xb.size());
    ASSERT_TRUE(rt::ropeForward(xb.data(), expected.data(), 1, seq, heads, dim,
                                10000.0, start[b])
                    .isOk());
    std::vector<float> got(y.begin() + b * seq * width, y.begin() + (b + 1) * seq * width);
    EXPECT_TRUE(allClose(got, expected, 0, 0));
  }
  std::vector<int64_t> negative = {-1, 0};
  EXPECT_FALSE(rt::ropeAtForward(x.data(), y.data(), negative.data(), 2, seq,
                                 heads, dim, 10000.0)
                   .isOk());
}

TEST(CpuInferenceTest, LastTokenPicksEachSequencesLastRow) {
  const int64_t batch = 2, seq = 3, dim = 2;
  std::vector<float> x = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
  std::vector<int64_t> lengths = {2, 3};
  std::vector<float> out(batch * dim);
  ASSERT_TRUE(rt::lastTokenForward(x.data(), lengths.data(), out.data(), batch,
                                   seq, dim)
                  .isOk());
  EXPECT_EQ(out, (std::vector<float>{2, 3, 14, 15}));
  std::vector<int64_t> bad = {0, 4};
  EXPECT_EQ(rt::lastTokenForward(x.data(), bad.data(), out.data(), batch, seq,
                                 dim).code(),
            StatusCode::InvalidArgument);
}

} // namespace
