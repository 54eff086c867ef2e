// CPU backward kernels checked against central finite differences of their forward kernels,
// plus AdamW against a hand-computed two-step example.
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Kernels.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace rt = llmir::runtime;
using llmir::runtime::StatusCode;
using llmir::runtime::testing::allClose;
using llmir::runtime::testing::randomVector;

namespace {

/// d loss / d x[i] by central differences, loss evaluated by `loss` (which
/// runs the float forward kernel and reduces in double).
std::vector<double> numericGradient(std::vector<float> &x,
                                    const std::function<double()> &loss,
                                    float h = 1e-2f) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    g[i] = (up - down) / (2.0 * static_cast<double>(h));
  }
  return g;
}

double weightedSum(const std::vector<float> &y, const std::vector<float> &w) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i)
    s += static_cast<double>(y[i]) * w[i];
  return s;
}

TEST(CpuBackwardTest, SiluAndGeluExactMatchFiniteDifferences) {
  const int64_t n = 401;
  auto x = randomVector(n, 1, 0.0f, 3.0f), dy = randomVector(n, 2);
  std::vector<float> y(n), dxs(n), dxg(n);
  ASSERT_TRUE(rt::siluBackward(x.data(), dy.data(), dxs.data(), n).isOk());
  ASSERT_TRUE(rt::geluExactBackward(x.data(), dy.data(), dxg.data(), n).isOk());
  auto silu = [&] { EXPECT_TRUE(rt::siluForward(x.data(), y.data(), n).isOk()); return weightedSum(y, dy); };
  auto gelu = [&] { EXPECT_TRUE(rt::geluExactForward(x.data(), y.data(), n).isOk()); return weightedSum(y, dy); };
  EXPECT_TRUE(allClose(dxs, numericGradient(x, silu, 1e-3f), 2e-3, 2e-3));
  EXPECT_TRUE(allClose(dxg, numericGradient(x, gelu, 1e-3f), 2e-3, 2e-3));
}

TEST(CpuBackwardTest, RmsNormMatchesFiniteDifferences) {
  const int64_t rows = 5, cols = 24;
  const float eps = 1e-5f;
  auto x = randomVector(rows * cols, 3, 0.3f, 1.0f);
  auto w = randomVector(cols, 4, 1.0f, 0.3f), dy = randomVector(rows * cols, 5);
  std::vector<float> y(rows * cols), rstd(rows), dx(rows * cols), dw(cols);
  ASSERT_TRUE(rt::rmsNormForward(x.data(), w.data(), y.data(), rstd.data(), rows, cols, eps).isOk());
  ASSERT_TRUE(rt::rmsNormBackward(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(),
                                  rows, cols).isOk());
  auto loss = [&] {
    EXPECT_TRUE(rt::rmsNormForward(x.data(), w.data(), y.data(), nullptr, rows, cols, eps).isOk());
    return weightedSum(y, dy);
  };
  EXPECT_TRUE(allClose(dx, numericGradient(x, loss), 2e-3, 2e-3));
  EXPECT_TRUE(allClose(dw, numericGradient(w, loss), 2e-3, 2e-3));
}

TEST(CpuBackwardTest, RopeBackwardIsTheInverseRotation) {
  const int64_t B = 2, S = 6, H = 2, D = 8;
  auto x = randomVector(B * S * H * D, 6), dy = randomVector(B * S * H * D, 7);
  std::vector<float> y(x.size()), dx(x.size()), back(x.size());
  ASSERT_TRUE(rt::ropeBackward(dy.data(), dx.data(), B, S, H, D, 10000.0, 3).isOk());
  auto loss = [&] {
    EXPECT_TRUE(rt::ropeForward(x.data(), y.data(), B, S, H, D, 10000.0, 3).isOk());
    return weightedSum(y, dy);
  };
  EXPECT_TRUE(allClose(dx, numericGradient(x, loss), 1e-3, 1e-3));
  // Rotation is orthogonal: backward(forward(x)) == x.
  ASSERT_TRUE(rt::ropeForward(x.data(), y.data(), B, S, H, D, 10000.0, 3).isOk());
  ASSERT_TRUE(rt::ropeBackward(y.data(), back.data(), B, S, H, D, 10000.0, 3).isOk());
  EXPECT_TRUE(allClose(back, x, 1e-6, 1e-5));
}

TEST(CpuBackwardTest, AttentionMatchesFiniteDifferencesWithGqa) {
  struct Case { int64_t B, S, H, Hkv, D; bool causal; };
  for (Case c : {Case{2, 5, 4, 2, 3, true}, Case{1, 4, 2, 2, 4, false}, Case{1, 6, 3, 1, 2, true}}) {
    SCOPED_TRACE("H=" + std::to_string(c.H) + " Hkv=" + std::to_string(c.Hkv) +
                 " causal=" + std::to_string(c.causal));
    auto q = randomVector(c.B * c.S * c.H * c.D, 8), k = randomVector(c.B * c.S * c.Hkv * c.D, 9);
    auto v = randomVector(c.B * c.S * c.Hkv * c.D, 10), dout = randomVector(q.size(), 11);
    const float scale = 0.6f;
    std::vector<float> out(q.size()), lse(c.B * c.H * c.S);
    ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), out.data(), c.B, c.S, c.H,
                                     c.Hkv, c.D, scale, c.causal, lse.data()).isOk());
    std::vector<float> dq(q.size()), dk(k.size(), 9.0f), dv(v.size(), 9.0f);
    ASSERT_TRUE(rt::attentionBackward(q.data(), k.data(), v.data(), {out.data(), lse.data()},
                                      dout.data(), dq.data(), dk.data(), dv.data(), c.B, c.S,
                                      c.H, c.Hkv, c.D, scale, c.causal).isOk());
    auto loss = [&] {
      EXPECT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), out.data(), c.B, c.S, c.H,
                                       c.Hkv, c.D, scale, c.causal, nullptr).isOk());
      return weightedSum(out, dout);
    };
    EXPECT_TRUE(allClose(dq, numericGradient(q, loss), 2e-3, 2e-3));
    EXPECT_TRUE(allClose(dk, numericGradient(k, loss), 2e-3, 2e-3));
    EXPECT_TRUE(allClose(dv, numericGradient(v, loss), 2e-3, 2e-3));
    // Without the saved forward the kernel recomputes the softmax: same result.
    std::vector<float> dq2(q.size()), dk2(k.size()), dv2(v.size());
    ASSERT_TRUE(rt::attentionBackward(q.data(), k.data(), v.data(), {}, dout.data(),
                                      dq2.data(), dk2.data(), dv2.data(), c.B, c.S, c.H, c.Hkv,
                                      c.D, scale, c.causal).isOk());
    EXPECT_TRUE(allClose(dq2, std::vector<double>(dq.begin(), dq.end()), 1e-6, 1e-5));
    EXPECT_TRUE(allClose(dk2, std::vector<double>(dk.begin(), dk.end()), 1e-6, 1e-5));
    EXPECT_TRUE(allClose(dv2, std::vector<double>(dv.begin(), dv.end()), 1e-6, 1e-5));
  }
}

TEST(CpuBackwardTest, CrossEntropyMatchesFiniteDifferences) {
  const int64_t rows = 4, vocab = 9;
  auto logits = randomVector(rows * vocab, 12, 0.0f, 2.0f);
  std::vector<int64_t> labels = {0, 8, 3, 3};
  float loss = 0;
  std::vector<float> lse(rows), dlogits(rows * vocab), dlogits2(rows * vocab);
  ASSERT_TRUE(rt::crossEntropyForward(logits.data(), labels.data(), rows, vocab, &loss, nullptr,
                                      lse.data()).isOk());
  const float dloss = 0.7f;
  ASSERT_TRUE(rt::crossEntropyBackward(logits.data(), labels.data(), lse.data(), dloss,
                                       dlogits.data(), rows, vocab, 0).isOk());
  ASSERT_TRUE(rt::crossEntropyBackward(logits.data(), labels.data(), nullptr, dloss,
                                       dlogits2.data(), rows, vocab, rows).isOk());
  auto f = [&] {
    float l = 0;
    EXPECT_TRUE(rt::crossEntropyForward(logits.data(), labels.data(), rows, vocab, &l, nullptr,
                                        nullptr).isOk());
    return dloss * static_cast<double>(l);
  };
  auto num = numericGradient(logits, f);
  EXPECT_TRUE(allClose(dlogits, num, 1e-3, 2e-3));
  EXPECT_TRUE(allClose(dlogits2, num, 1e-3, 2e-3));
  // A global mean over 3x as many rows scales the gradient by 1/3.
  std::vector<float> d3(rows * vocab);
  ASSERT_TRUE(rt::crossEntropyBackward(logits.data(), labels.data(), lse.data(), dloss, d3.data(),
                                       rows, vocab, 3 * rows).isOk());
  for (size_t i = 0; i < d3.size(); ++i)
    ASSERT_NEAR(d3[i] * 3.0f, dlogits[i], 1e-6);
  labels[1] = -1;
  EXPECT_EQ(rt::crossEntropyBackward(logits.data(), labels.data(), nullptr, dloss, d3.data(), rows,
                                     vocab, 0).code(),
            StatusCode::InvalidArgument);
}

TEST(CpuBackwardTest, EmbeddingBackwardAccumulatesRepeatedIds) {
  const int64_t vocab = 7, dim = 100; // dim > one 64-column block
  std::vector<int64_t> ids = {2, 5, 2, 0, 2};
  auto dout = randomVector(ids.size() * dim, 13);
  std::vector<float> dtable(vocab * dim, 1.0f); // pre-filled: must accumulate into it
  ASSERT_TRUE(rt::embeddingBackward(ids.data(), dout.data(), dtable.data(), ids.size(), vocab, dim).isOk());
  std::vector<double> expected(vocab * dim, 1.0);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < dim; ++c)
      expected[ids[i] * dim + c] += dout[i * dim + c];
  EXPECT_TRUE(allClose(dtable, expected, 1e-6, 1e-6));
  // Finite differences of sum(dout * embedding(table)) w.r.t. the table.
  auto table = randomVector(vocab * dim, 14);
  std::vector<float> out(ids.size() * dim), zero(vocab * dim, 0.0f);
  ASSERT_TRUE(rt::embeddingBackward(ids.data(), dout.data(), zero.data(), ids.size(), vocab, dim).isOk());
  auto loss = [&] {
    EXPECT_TRUE(rt::embeddingForward(ids.data(), table.data(), out.data(), ids.size(), vocab, dim).isOk());
    return weightedSum(out, dout);
  };
  EXPECT_TRUE(allClose(zero, numericGradient(table, loss), 1e-3, 1e-3));
  ids[4] = 7;
  EXPECT_EQ(rt::embeddingBackward(ids.data(), dout.data(), dtable.data(), ids.size(), vocab, dim).code(),
            StatusCode::InvalidArgument);
}

TEST(CpuBackwardTest, AdamWTwoStepsByHand) {
  // lr 0.1, betas (0.9, 0.95), eps 1e-8, wd 0.1; p0 = 1, grads 0.5 then -0.25.
  // Step 1: p = 1 * (1 - 0.01) = 0.99; m = 0.05; v = 0.0125;
  //   mhat = 0.05 / 0.1 = 0.5; vhat = 0.0125 / 0.05 = 0.25; p = 0.99 - 0.1 * 0.5 / 0.5 = 0.89.
  // Step 2: p = 0.89 * 0.99 = 0.8811; m = 0.045 - 0.025 = 0.02;
  //   v = 0.011875 + 0.003125 = 0.015; mhat = 0.02 / 0.19; vhat = 0.015 / 0.0975;
  //   p = 0.8811 - 0.1 * mhat / (sqrt(vhat) + 1e-8).
  float p = 1.0f, m = 0.0f, v = 0.0f;
  float g = 0.5f;
  ASSERT_TRUE(rt::adamwUpdate(&p, &g, &m, &v, 1, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1).isOk());
  EXPECT_NEAR(p, 0.89, 1e-6);
  EXPECT_NEAR(m, 0.05, 1e-7);
  EXPECT_NEAR(v, 0.0125, 1e-8);
  g = -0.25f;
  ASSERT_TRUE(rt::adamwUpdate(&p, &g, &m, &v, 1, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 2).isOk());
  const double expected = 0.8811 - 0.1 * (0.02 / 0.19) / (std::sqrt(0.015 / 0.0975) + 1e-8);
  EXPECT_NEAR(p, expected, 1e-6);
  EXPECT_NEAR(m, 0.02, 1e-7);
  EXPECT_NEAR(v, 0.015, 1e-8);
  EXPECT_EQ(rt::adamwUpdate(&p, &g, &m, &v, 1, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 0).code(),
            StatusCode::InvalidArgument);
  EXPECT_EQ(rt::adamwUpdate(&p, &g, &m, &v, 1, 0.1f, 1.0f, 0.95f, 1e-8f, 0.1f, 1).code(),
            StatusCode::InvalidArgument);
}

// ---- SingleProcessCommunicator --------------------------------------------------

TEST(SingleProcessCommunicatorTest, CollectivesAreCopies) {
  rt::SingleProcessCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  std::vector<float> x = {1, 2, 3}, y(3);
  ASSERT_TRUE(comm.allReduceSum(x.data(), 3).isOk());
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
  ASSERT_TRUE(comm.allGather(x.data(), y.data(), 3).isOk());
  EXPECT_EQ(y, x);
  std::fill(y.begin(), y.end(), 0.0f);
  ASSERT_TRUE(comm.reduceScatterSum(x.data(), y.data(), 3).isOk());
  EXPECT_EQ(y, x);
  ASSERT_TRUE(comm.broadcast(x.data(), 3, 0).isOk());
  auto g = comm.createGroup({0});
  ASSERT_TRUE(g.isOk());
  EXPECT_EQ(*comm.groupSize(*g), 1);
  ASSERT_TRUE(comm.allReduceSum(x.data(), 3, *g).isOk());
  EXPECT_TRUE(comm.barrier().isOk());
  EXPECT_EQ(comm.createGroup({0, 1}).status().code(), StatusCode::InvalidArgument);
  EXPECT_EQ(comm.allReduceSum(x.data(), 3, 5).code(), StatusCode::InvalidArgument);
  EXPECT_EQ(comm.broadcast(x.data(), 3, 1).code(), StatusCode::InvalidArgument);
  EXPECT_EQ(comm.send(x.data(), 3, 0, 0).code(), StatusCode::InvalidArgument);
  EXPECT_EQ(comm.allGather(nullptr, y.data(), 3).code(), StatusCode::InvalidArgument);
}

} // namespace
