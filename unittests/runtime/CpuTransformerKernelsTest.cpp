// CPU forward kernels for GPT-2/LLaMA (GEMM, elementwise, embedding, RoPE, attention, cross-entropy)
// checked against straightforward double-precision references.
#include "llmir/runtime/Kernels.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace rt = llmir::runtime;
using llmir::runtime::StatusCode;
using llmir::runtime::testing::allClose;
using llmir::runtime::testing::randomVector;

namespace {

// ---- GEMM ----------------------------------------------------------------------

/// C = alpha op(A) op(B) + beta C in double, row-major with leading dims.
std::vector<double> gemmRef(bool tA, bool tB, int64_t m, int64_t n, int64_t k,
                            double alpha, const std::vector<float> &A,
                            int64_t lda, const std::vector<float> &B,
                            int64_t ldb, double beta, const std::vector<float> &C,
                            int64_t ldc) {
  std::vector<double> out(C.begin(), C.end());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double a = tA ? A[p * lda + i] : A[i * lda + p];
        const double b = tB ? B[j * ldb + p] : B[p * ldb + j];
        acc += a * b;
      }
      out[i * ldc + j] = alpha * acc + beta * C[i * ldc + j];
    }
  return out;
}

TEST(CpuGemmTest, AllTransposesWithPaddedLeadingDimensions) {
  const int64_t m = 7, n = 5, k = 9;
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      SCOPED_TRACE(std::string("tA=") + (tA ? "1" : "0") + " tB=" + (tB ? "1" : "0"));
      const int64_t lda = (tA ? m : k) + 3, ldb = (tB ? k : n) + 2, ldc = n + 1;
      auto A = randomVector((tA ? k : m) * lda, 1);
      auto B = randomVector((tB ? n : k) * ldb, 2);
      auto C = randomVector(m * ldc, 3);
      auto expected = gemmRef(tA, tB, m, n, k, 0.5, A, lda, B, ldb, 2.0, C, ldc);
      ASSERT_TRUE(rt::gemm(tA, tB, m, n, k, 0.5f, A.data(), lda, B.data(), ldb,
                           2.0f, C.data(), ldc)
                      .isOk());
      EXPECT_TRUE(allClose(C, expected, 1e-5, 1e-5));
    }
}

TEST(CpuGemmTest, BetaZeroOverwritesNaN) {
  std::vector<float> A = {1, 2, 3, 4}, B = {1, 0, 0, 1};
  std::vector<float> C(4, std::numeric_limits<float>::quiet_NaN());
  ASSERT_TRUE(rt::gemm(false, false, 2, 2, 2, 1.0f, A.data(), 2, B.data(), 2,
                       0.0f, C.data(), 2)
                  .isOk());
  EXPECT_EQ(C, A);
  // k == 0 with beta == 0 zeroes C.
  ASSERT_TRUE(rt::gemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2,
                       0.0f, C.data(), 2)
                  .isOk());
  EXPECT_EQ(C, std::vector<float>(4, 0.0f));
}

TEST(CpuGemmTest, LargeMatchesReference) {
  const int64_t m = 130, n = 70, k = 300;
  auto A = randomVector(m * k, 4), B = randomVector(k * n, 5);
  std::vector<float> C(m * n);
  ASSERT_TRUE(rt::gemm(false, false, m, n, k, 1.0f, A.data(), k, B.data(), n,
                       0.0f, C.data(), n)
                  .isOk());
  EXPECT_TRUE(allClose(C, gemmRef(false, false, m, n, k, 1, A, k, B, n, 0, C, n),
                       1e-4, 1e-4));
}

TEST(CpuGemmTest, RejectsBadArguments) {
  std::vector<float> A(16), B(16), C(16);
  EXPECT_EQ(rt::gemm(false, false, 4, 4, 4, 1, A.data(), 3, B.data(), 4, 0,
                     C.data(), 4).code(), StatusCode::InvalidArgument); // lda < k
  EXPECT_EQ(rt::gemm(false, true, 4, 4, 4, 1, A.data(), 4, B.data(), 4, 0,
                     nullptr, 4).code(), StatusCode::InvalidArgument);
  EXPECT_EQ(rt::gemm(false, false, -1, 4, 4, 1, A.data(), 4, B.data(), 4, 0,
                     C.data(), 4).code(), StatusCode::InvalidArgument);
  EXPECT_EQ(rt::gemm(false, false, 4, 4, int64_t(1) << 40, 1, A.data(), 4,
                     B.data(), 4, 0, C.data(), 4).code(),
            StatusCode::InvalidArgument);
  EXPECT_EQ(rt::gemmStridedBatched(false, false, 2, 2, 2, 1, A.data(), 2, 4,
                                   B.data(), 2, 4, 0, C.data(), 2, 0, 2).code(),
            StatusCode::InvalidArgument); // outputs overlap
}

TEST(CpuGemmTest, StridedBatchedMatchesLoopAndBroadcastsB) {
  const int64_t m = 3, n = 4, k = 5, batch = 3;
  auto A = randomVector(batch * m * k, 6);
  auto B = randomVector(batch * n * k, 7);
  std::vector<float> C(batch * m * n, 1.0f);
  ASSERT_TRUE(rt::gemmStridedBatched(false, true, m, n, k, 1.0f, A.data(), k,
                                     m * k, B.data(), k, n * k, 1.0f, C.data(),
                                     n, m * n, batch)
                  .isOk());
  std::vector<float> Cb(batch * m * n);
  ASSERT_TRUE(rt::gemmStridedBatched(false, true, m, n, k, 1.0f, A.data(), k,
                                     m * k, B.data(), k, 0, 0.0f, Cb.data(), n,
                                     m * n, batch)
                  .isOk());
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<float> Ab(A.begin() + b * m * k, A.begin() + (b + 1) * m * k);
    std::vector<float> Bb(B.begin() + b * n * k, B.begin() + (b + 1) * n * k);
    std::vector<float> B0(B.begin(), B.begin() + n * k);
    std::vector<float> ones(m * n, 1.0f), zeros(m * n, 0.0f);
    auto ref = gemmRef(false, true, m, n, k, 1, Ab, k, Bb, k, 1, ones, n);
    auto ref0 = gemmRef(false, true, m, n, k, 1, Ab, k, B0, k, 0, zeros, n);
    EXPECT_TRUE(allClose(std::vector<float>(C.begin() + b * m * n, C.begin() + (b + 1) * m * n),
                         ref, 1e-5, 1e-5));
    EXPECT_TRUE(allClose(std::vector<float>(Cb.begin() + b * m * n, Cb.begin() + (b + 1) * m * n),
                         ref0, 1e-5, 1e-5));
  }
}

// ---- Elementwise ---------------------------------------------------------------

TEST(CpuElementwiseTest, AddBiasAddMul) {
  const int64_t rows = 300, cols = 70; // > OpenMP threshold
  auto y = randomVector(rows * cols, 8), bias = randomVector(cols, 9);
  auto expected = std::vector<double>(y.begin(), y.end());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      expected[r * cols + c] += bias[c];
  ASSERT_TRUE(rt::addBias(y.data(), bias.data(), rows, cols).isOk());
  EXPECT_TRUE(allClose(y, expected, 1e-6, 1e-6));

  std::vector<float> dbias(cols);
  ASSERT_TRUE(rt::biasBackward(y.data(), dbias.data(), rows, cols).isOk());
  std::vector<double> dbRef(cols, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      dbRef[c] += y[r * cols + c];
  EXPECT_TRUE(allClose(dbias, dbRef, 1e-5, 1e-5));

  const int64_t n = 20001;
  auto a = randomVector(n, 10), b = randomVector(n, 11);
  std::vector<float> s(n), p(n);
  ASSERT_TRUE(rt::add(a.data(), b.data(), s.data(), n).isOk());
  ASSERT_TRUE(rt::mul(a.data(), b.data(), p.data(), n).isOk());
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(s[i], a[i] + b[i]);
    ASSERT_EQ(p[i], a[i] * b[i]);
  }
  // In place (y aliases a).
  ASSERT_TRUE(rt::add(a.data(), b.data(), a.data(), n).isOk());
  EXPECT_EQ(a, s);
  EXPECT_EQ(rt::add(a.data(), nullptr, s.data(), n).code(), StatusCode::InvalidArgument);
  EXPECT_EQ(rt::mul(a.data(), b.data(), p.data(), -1).code(), StatusCode::InvalidArgument);
}

TEST(CpuElementwiseTest, SiluAndExactGeluMatchFormulas) {
  for (int64_t n : {7, 40001}) {
    auto x = randomVector(n, 12, 0.0f, 4.0f);
    x[0] = -90.0f; // exp overflow region must give -0, not NaN
    std::vector<float> ys(n), yg(n);
    ASSERT_TRUE(rt::siluForward(x.data(), ys.data(), n).isOk());
    ASSERT_TRUE(rt::geluExactForward(x.data(), yg.data(), n).isOk());
    std::vector<double> rs(n), rg(n);
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i];
      rs[i] = v / (1.0 + std::exp(-v));
      rg[i] = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    }
    EXPECT_TRUE(allClose(ys, rs, 1e-6, 1e-5)) << n;
    EXPECT_TRUE(allClose(yg, rg, 1e-6, 1e-5)) << n;
  }
  // HF/torch reference points: F.silu / F.gelu in float64.
  std::vector<float> x = {-2.0f, 0.5f, 3.0f}, y(3);
  ASSERT_TRUE(rt::geluExactForward(x.data(), y.data(), 3).isOk());
  EXPECT_TRUE(allClose(y, std::vector<double>{-0.04550026389635842, 0.34573123063700656,
                                              2.99595030590511},
                       1e-7, 1e-6));
}

TEST(CpuElementwiseTest, CopyAndScatterColumnsSplitFusedQkv) {
  const int64_t rows = 4, d = 6;
  auto qkv = randomVector(rows * 3 * d, 13);
  std::vector<float> parts[3], back(rows * 3 * d, -1.0f);
  for (int p = 0; p < 3; ++p) {
    parts[p].resize(rows * d);
    ASSERT_TRUE(rt::copyColumns(qkv.data(), rows, 3 * d, p * d, parts[p].data(), d).isOk());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < d; ++c)
        ASSERT_EQ(parts[p][r * d + c], qkv[r * 3 * d + p * d + c]);
    ASSERT_TRUE(rt::scatterColumns(parts[p].data(), rows, d, back.data(), 3 * d, p * d).isOk());
  }
  EXPECT_EQ(back, qkv);
  std::vector<float> dst(rows * d);
  EXPECT_EQ(rt::copyColumns(qkv.data(), rows, 3 * d, 2 * d + 1, dst.data(), d).code(),
            StatusCode::InvalidArgument);
  EXPECT_EQ(rt::scatterColumns(dst.data(), rows, d, back.data(), 3 * d, -1).code(),
            StatusCode::InvalidArgument);
}

// ---- Embedding -----------------------------------------------------------------

TEST(CpuEmbeddingTest, GathersRowsAndRejectsOutOfRangeIds) {
  const int64_t vocab = 11, dim = 5;
  auto table = randomVector(vocab * dim, 14);
  std::vector<int64_t> ids = {3, 0, 10, 3, 7};
  std::vector<float> out(ids.size() * dim);
  ASSERT_TRUE(rt::embeddingForward(ids.data(), table.data(), out.data(), ids.size(), vocab, dim).isOk());
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < dim; ++c)
      ASSERT_EQ(out[i * dim + c], table[ids[i] * dim + c]);

  for (int64_t bad : {int64_t(11), int64_t(-1), std::numeric_limits<int64_t>::max()}) {
    ids[2] = bad;
    rt::Status st = rt::embeddingForward(ids.data(), table.data(), out.data(), ids.size(), vocab, dim);
    EXPECT_EQ(st.code(), StatusCode::InvalidArgument);
    EXPECT_NE(st.message().find("id " + std::to_string(bad) + " at position 2"), std::string::npos)
        << st.message();
  }

  std::vector<int32_t> ids32 = {1, -5, 2147483647};
  std::vector<int64_t> ids64(3);
  ASSERT_TRUE(rt::idsToInt64(ids32.data(), ids64.data(), 3).isOk());
  EXPECT_EQ(ids64, (std::vector<int64_t>{1, -5, 2147483647}));
}

// ---- RoPE ----------------------------------------------------------------------

/// HF rotate-half RoPE in double (angles from a double inv_freq).
std::vector<double> ropeRef(const std::vector<float> &x, int64_t B, int64_t S,
                            int64_t H, int64_t D, double theta, int64_t offset) {
  std::vector<double> y(x.size());
  const int64_t half = D / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t base = ((b * S + s) * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          const double ang = (offset + s) / std::pow(theta, 2.0 * i / D);
          const double c = std::cos(ang), sn = std::sin(ang);
          y[base + i] = x[base + i] * c - x[base + i + half] * sn;
          y[base + i + half] = x[base + i + half] * c + x[base + i] * sn;
        }
      }
  return y;
}

TEST(CpuRopeTest, MatchesRotateHalfReference) {
  const int64_t B = 2, S = 9, H = 3, D = 8;
  auto x = randomVector(B * S * H * D, 15);
  for (int64_t offset : {0, 5}) {
    std::vector<float> y(x.size());
    ASSERT_TRUE(rt::ropeForward(x.data(), y.data(), B, S, H, D, 10000.0, offset).isOk());
    // float32 angles (as HF computes them) differ from double ones by ~1e-7 rel.
    EXPECT_TRUE(allClose(y, ropeRef(x, B, S, H, D, 10000.0, offset), 1e-5, 1e-5));
  }
  // Position 0 is the identity; in-place works.
  std::vector<float> y = x;
  ASSERT_TRUE(rt::ropeForward(y.data(), y.data(), B, S, H, D, 500000.0, 0).isOk());
  for (int64_t h = 0; h < H * D; ++h)
    ASSERT_EQ(y[h], x[h]);
  EXPECT_EQ(rt::ropeForward(x.data(), y.data(), B, S, H, 7, 1e4, 0).code(),
            StatusCode::InvalidArgument);
  EXPECT_EQ(rt::ropeForward(x.data(), y.data(), B, S, H, D, 0.0, 0).code(),
            StatusCode::InvalidArgument);
}

// ---- Attention -----------------------------------------------------------------

struct AttnRef {
  std::vector<double> out, lse;
};

AttnRef attentionRef(const std::vector<float> &q, const std::vector<float> &k,
                     const std::vector<float> &v, int64_t B, int64_t S,
                     int64_t H, int64_t Hkv, int64_t D, double scale,
                     bool causal) {
  AttnRef r{std::vector<double>(B * S * H * D), std::vector<double>(B * H * S)};
  const int64_t group = H / Hkv;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / group;
      for (int64_t i = 0; i < S; ++i) {
        std::vector<double> sc(S, -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < S; ++j) {
          if (causal && j > i)
            continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += double(q[((b * S + i) * H + h) * D + d]) * k[((b * S + j) * Hkv + kh) * D + d];
          sc[j] = scale * dot;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < S; ++j)
          sum += (sc[j] == -INFINITY) ? 0.0 : std::exp(sc[j] - mx);
        r.lse[(b * H + h) * S + i] = mx + std::log(sum);
        for (int64_t j = 0; j < S; ++j) {
          const double p = (sc[j] == -INFINITY) ? 0.0 : std::exp(sc[j] - mx) / sum;
          for (int64_t d = 0; d < D; ++d)
            r.out[((b * S + i) * H + h) * D + d] += p * v[((b * S + j) * Hkv + kh) * D + d];
        }
      }
    }
  return r;
}

TEST(CpuAttentionTest, MatchesReferenceWithGqaAndCausalMask) {
  struct Case { int64_t B, S, H, Hkv, D; bool causal; };
  for (Case c : {Case{2, 7, 4, 2, 8, true}, Case{1, 5, 3, 3, 4, false},
                 Case{2, 33, 6, 1, 16, true}, Case{1, 130, 4, 4, 8, true}}) {
    SCOPED_TRACE("S=" + std::to_string(c.S) + " H=" + std::to_string(c.H) +
                 " Hkv=" + std::to_string(c.Hkv) + " causal=" + std::to_string(c.causal));
    auto q = randomVector(c.B * c.S * c.H * c.D, 16, 0.0f, 2.0f);
    auto k = randomVector(c.B * c.S * c.Hkv * c.D, 17, 0.0f, 2.0f);
    auto v = randomVector(c.B * c.S * c.Hkv * c.D, 18);
    const float scale = 1.0f / std::sqrt(float(c.D));
    std::vector<float> out(q.size()), lse(c.B * c.H * c.S, -7.0f);
    ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), out.data(), c.B, c.S,
                                     c.H, c.Hkv, c.D, scale, c.causal, lse.data())
                    .isOk());
    AttnRef ref = attentionRef(q, k, v, c.B, c.S, c.H, c.Hkv, c.D, scale, c.causal);
    EXPECT_TRUE(allClose(out, ref.out, 1e-5, 1e-4));
    EXPECT_TRUE(allClose(lse, ref.lse, 1e-6, 1e-5));
    std::vector<float> out2(q.size());
    ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), out2.data(), c.B, c.S,
                                     c.H, c.Hkv, c.D, scale, c.causal, nullptr)
                    .isOk());
    EXPECT_EQ(out, out2);
  }
}

TEST(CpuAttentionTest, LargeScoresDoNotOverflow) {
  const int64_t S = 4, D = 2;
  std::vector<float> q(S * D, 100.0f), k(S * D, 100.0f), v = randomVector(S * D, 19);
  std::vector<float> out(S * D);
  ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), out.data(), 1, S, 1, 1, D,
                                   1.0f, true, nullptr)
                  .isOk());
  for (float o : out)
    EXPECT_TRUE(std::isfinite(o));
}

TEST(CpuAttentionTest, RejectsBadHeads) {
  std::vector<float> buf(64);
  EXPECT_EQ(rt::attentionForward(buf.data(), buf.data(), buf.data(), buf.data(), 1, 2, 3, 2, 2,
                                 1.0f, true, nullptr).code(),
            StatusCode::InvalidArgument);
  EXPECT_EQ(rt::attentionForward(buf.data(), buf.data(), buf.data(), buf.data(), 1, 2, 2, 0, 2,
                                 1.0f, true, nullptr).code(),
            StatusCode::InvalidArgument);
  EXPECT_EQ(rt::attentionForward(buf.data(), nullptr, buf.data(), buf.data(), 1, 2, 2, 2, 2,
                                 1.0f, true, nullptr).code(),
            StatusCode::InvalidArgument);
}

// ---- Cross-entropy ---------------------------------------------------------------

TEST(CpuCrossEntropyTest, MatchesLogSoftmaxReference) {
  const int64_t rows = 37, vocab = 1001;
  auto logits = randomVector(rows * vocab, 20, 0.0f, 3.0f);
  logits[5] = 80.0f; // exp(80) overflows float: must be max-subtracted
  std::vector<int64_t> labels(rows);
  for (int64_t r = 0; r < rows; ++r)
    labels[r] = (r * 131) % vocab;
  float loss = 0;
  std::vector<float> rowLoss(rows), lse(rows);
  ASSERT_TRUE(rt::crossEntropyForward(logits.data(), labels.data(), rows, vocab, &loss,
                                      rowLoss.data(), lse.data())
                  .isOk());
  std::vector<double> rl(rows), ls(rows);
  double mean = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < vocab; ++c)
      mx = std::max<double>(mx, logits[r * vocab + c]);
    for (int64_t c = 0; c < vocab; ++c)
      sum += std::exp(logits[r * vocab + c] - mx);
    ls[r] = mx + std::log(sum);
    rl[r] = ls[r] - logits[r * vocab + labels[r]];
    mean += rl[r] / rows;
  }
  EXPECT_TRUE(allClose(rowLoss, rl, 1e-5, 1e-6));
  EXPECT_TRUE(allClose(lse, ls, 1e-5, 1e-6));
  EXPECT_NEAR(loss, mean, 1e-6 * std::fabs(mean));

  labels[9] = vocab;
  rt::Status st = rt::crossEntropyForward(logits.data(), labels.data(), rows, vocab, &loss,
                                          nullptr, nullptr);
  EXPECT_EQ(st.code(), StatusCode::InvalidArgument);
  EXPECT_NE(st.message().find("label 1001 at position 9"), std::string::npos) << st.message();
  EXPECT_EQ(rt::crossEntropyForward(logits.data(), labels.data(), 0, vocab, &loss, nullptr,
                                    nullptr).code(),
            StatusCode::InvalidArgument);
}

} // namespace
