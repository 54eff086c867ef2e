// The CUDA backend's kernels run on the CPU (HostEmulation.h: one std::thread per
// CUDA thread, real __syncthreads barriers and block reductions) against the CPU
// reference kernels: their indexing, masking, tiling and reduction logic is tested
// on machines without a GPU. CudaBackendTest.cpp compares the real device results
// on a GPU. Tolerances are relative to 1e-3 + |reference| (see `close`).
#define LLMIR_CUDA_HOST_EMULATION 1
#include "RingAttentionKernels.cuh"
#include "ElementwiseKernels.cuh"
#include "InferenceKernels.cuh"
#include "LossKernels.cuh"
#include "NormKernels.cuh"

#include "llmir/runtime/Float16.h"
#include "llmir/runtime/Kernels.h"
#include "llmir/runtime/SafeTensors.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace cu = llmir::runtime::cuda;
namespace rt = llmir::runtime;
using cu::emulation::launch;

namespace {

std::vector<float> rnd(size_t n, unsigned seed, float stddev = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(gen);
  return v;
}

/// max |a - b| / (1e-3 + |b|) <= tol.
::testing::AssertionResult close(const std::vector<float> &a, const std::vector<float> &b,
                                 double tol) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes differ";
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double e = std::fabs(a[i] - b[i]) / (1e-3 + std::fabs(b[i]));
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  if (worst <= tol)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << worst << " at " << at << ": "
                                       << a[at] << " vs " << b[at];
}

struct AttentionCase {
  int64_t batch, seq, heads, kvHeads, headDim;
  bool causal;
};

template <int MAXD, int TILE, int TILEB> void checkAttention(const AttentionCase &c) {
  SCOPED_TRACE("seq " + std::to_string(c.seq) + " headDim " + std::to_string(c.headDim));
  const int64_t B = c.batch, S = c.seq, H = c.heads, KH = c.kvHeads, D = c.headDim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  auto q = rnd(B * S * H * D, 1), k = rnd(B * S * KH * D, 2), v = rnd(B * S * KH * D, 3),
       dout = rnd(B * S * H * D, 4);
  std::vector<float> o(q.size()), lse(B * H * S), oRef(q.size()), lseRef(B * H * S);
  ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), oRef.data(), B, S, H, KH, D,
                                   scale, c.causal, lseRef.data())
                  .isOk());
  cu::Layout L{S, H, KH, D, S, {}};
  dim3 grid(static_cast<unsigned>((S + 63) / 64), static_cast<unsigned>(H),
            static_cast<unsigned>(B));
  launch(grid, dim3(64), [&] {
    cu::attentionForwardKernel<MAXD, TILE>(q.data(), k.data(), v.data(), o.data(), lse.data(),
                                           L, cu::SequenceMask{L, c.causal}, scale);
  });
  EXPECT_TRUE(close(o, oRef, 1e-3)) << "forward";
  EXPECT_TRUE(close(lse, lseRef, 1e-4)) << "log-sum-exp";
  // The backward kernels read the saved O and log-sum-exp (here the CPU's, as
  // the backends hand attention's outputs to attention_grad).
  auto backward = [&](const std::vector<float> &lseIn, std::vector<float> &dq,
                      std::vector<float> &dk, std::vector<float> &dv) {
    std::vector<float> delta(B * H * S);
    launch(dim3(4), dim3(256),
           [&] { cu::attentionDeltaKernel(oRef.data(), dout.data(), delta.data(), L, B); });
    launch(grid, dim3(64), [&] {
      cu::attentionDqKernel<MAXD, TILEB>(q.data(), k.data(), v.data(), lseIn.data(),
                                         delta.data(), dout.data(), dq.data(), L, cu::SequenceMask{L, c.causal},
                                         scale);
    });
    dim3 gridK(grid.x, static_cast<unsigned>(KH), static_cast<unsigned>(B));
    launch(gridK, dim3(64), [&] {
      cu::attentionDkDvKernel<MAXD, TILEB>(q.data(), k.data(), v.data(), lseIn.data(),
                                           delta.data(), dout.data(), dk.data(), dv.data(), L,
                                           cu::SequenceMask{L, c.causal}, scale);
    });
  };
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), dqRef(q.size()),
      dkRef(k.size()), dvRef(v.size());
  ASSERT_TRUE(rt::attentionBackward(q.data(), k.data(), v.data(), {}, dout.data(),
                                    dqRef.data(), dkRef.data(), dvRef.data(), B, S, H, KH, D,
                                    scale, c.causal)
                  .isOk());
  backward(lseRef, dq, dk, dv);
  EXPECT_TRUE(close(dq, dqRef, 1e-2)) << "dq";
  EXPECT_TRUE(close(dk, dkRef, 1e-2)) << "dk";
  EXPECT_TRUE(close(dv, dvRef, 1e-2)) << "dv";
  // A log-sum-exp larger by log 2 halves every P: dV = P^T dO halves, on the
  // device kernels and on the CPU's saved-forward path alike.
  std::vector<float> lse2(lseRef);
  for (float &x : lse2)
    x += std::log(2.0f);
  backward(lse2, dq, dk, dv);
  std::vector<float> dq2(q.size()), dk2(k.size()), dv2(v.size());
  ASSERT_TRUE(rt::attentionBackward(q.data(), k.data(), v.data(), {oRef.data(), lse2.data()},
                                    dout.data(), dq2.data(), dk2.data(), dv2.data(), B, S, H,
                                    KH, D, scale, c.causal)
                  .isOk());
  for (float &x : dvRef)
    x *= 0.5f;
  EXPECT_TRUE(close(dv, dvRef, 1e-2)) << "dv, shifted log-sum-exp";
  EXPECT_TRUE(close(dv2, dvRef, 1e-2)) << "cpu dv, shifted log-sum-exp";
  EXPECT_TRUE(close(dq, dq2, 1e-2)) << "dq, shifted log-sum-exp";
  EXPECT_TRUE(close(dk, dk2, 1e-2)) << "dk, shifted log-sum-exp";
}

// The template instances launchAttentionForward/Backward pick (MAXD, forward
// tile, backward tile), with partial tiles, GQA and both maskings.
TEST(CudaKernelEmulation, Attention) {
  checkAttention<32, 32, 32>({2, 70, 4, 4, 16, true});
  checkAttention<64, 32, 32>({1, 129, 4, 2, 64, true});
  checkAttention<64, 32, 32>({2, 33, 4, 1, 64, false});
  checkAttention<128, 32, 16>({1, 65, 2, 2, 80, true});
  checkAttention<256, 16, 8>({1, 20, 2, 2, 160, true});
}

// Context parallelism: one cp rank's queries (local rows) against the keys
// all-gathered over cp, masked by global zig-zag positions, equal to the CPU
// kernels (which ContextParallelKernelsTest checks against one device).
TEST(CudaKernelEmulation, ContextParallelAttention) {
  const int64_t B = 1, local = 36, H = 4, KH = 2, D = 16;
  const float scale = 0.25f;
  for (int64_t rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("cp rank " + std::to_string(rank));
    const rt::CpChunks cp{rank, 2, local / 2};
    const int64_t kvSeq = 2 * local;
    auto q = rnd(B * local * H * D, 1), k = rnd(B * kvSeq * KH * D, 2),
         v = rnd(B * kvSeq * KH * D, 3), dout = rnd(B * local * H * D, 4);
    std::vector<float> oRef(q.size()), lseRef(B * H * local), o(q.size()), lse(lseRef.size());
    ASSERT_TRUE(rt::attentionForward(q.data(), k.data(), v.data(), oRef.data(), B, local, H,
                                     KH, D, scale, true, lseRef.data(), cp)
                    .isOk());
    cu::Layout L{local, H, KH, D, kvSeq, cp};
    dim3 grid(static_cast<unsigned>((local + 63) / 64), static_cast<unsigned>(H), 1);
    launch(grid, dim3(64), [&] {
      cu::attentionForwardKernel<32, 32>(q.data(), k.data(), v.data(), o.data(), lse.data(), L,
                                         cu::SequenceMask{L, true}, scale);
    });
    EXPECT_TRUE(close(o, oRef, 1e-3)) << "forward";
    EXPECT_TRUE(close(lse, lseRef, 1e-4)) << "log-sum-exp";
    std::vector<float> dqRef(q.size()), dkRef(k.size()), dvRef(v.size()), dq(q.size()),
        dk(k.size()), dv(v.size()), delta(B * H * local);
    ASSERT_TRUE(rt::attentionBackward(q.data(), k.data(), v.data(), {oRef.data(), lseRef.data()},
                                      dout.data(), dqRef.data(), dkRef.data(), dvRef.data(), B,
                                      local, H, KH, D, scale, true, cp)
                    .isOk());
    launch(dim3(4), dim3(256),
           [&] { cu::attentionDeltaKernel(oRef.data(), dout.data(), delta.data(), L, B); });
    launch(grid, dim3(64), [&] {
      cu::attentionDqKernel<32, 32>(q.data(), k.data(), v.data(), lseRef.data(), delta.data(),
                                    dout.data(), dq.data(), L, cu::SequenceMask{L, true}, scale);
    });
    dim3 gridK(static_cast<unsigned>((kvSeq + 63) / 64), static_cast<unsigned>(KH), 1);
    launch(gridK, dim3(64), [&] {
      cu::attentionDkDvKernel<32, 32>(q.data(), k.data(), v.data(), lseRef.data(), delta.data(),
                                      dout.data(), dk.data(), dv.data(), L, cu::SequenceMask{L, true}, scale);
    });
    EXPECT_TRUE(close(dq, dqRef, 1e-2)) << "dq";
    EXPECT_TRUE(close(dk, dkRef, 1e-2)) << "dk";
    EXPECT_TRUE(close(dv, dvRef, 1e-2)) << "dv";
  }
}

// cp-comm=ring: every step of one rank's ring (forward merged by log-sum-exp,
// backward dq summed, the held pair's dk/dv) with the ring step's mask policy
// equals the CPU ring kernels (which ContextParallelKernelsTest checks against
// one device), for both masked and skipped chunk pairs.
void checkRingAttention(int64_t cpSize, int64_t rank, int64_t kvHeads) {
  SCOPED_TRACE("cp " + std::to_string(cpSize) + " rank " + std::to_string(rank));
  const int64_t B = 1, local = 36, H = 4, KH = kvHeads, D = 16;
  const float scale = 0.25f;
  const rt::CpChunks cp{rank, cpSize, local / 2};
  const cu::Layout L{local, H, KH, D, local, {}};
  auto q = rnd(B * local * H * D, 1), dout = rnd(B * local * H * D, 4);
  std::vector<std::vector<float>> ks, vs;
  for (int64_t s = 0; s < cpSize; ++s) {
    ks.push_back(rnd(B * local * KH * D, 10 + s));
    vs.push_back(rnd(B * local * KH * D, 20 + s));
  }
  std::vector<float> oRef(q.size()), lseRef(B * H * local), o(q.size()), lse(lseRef.size());
  dim3 grid(static_cast<unsigned>((local + 63) / 64), static_cast<unsigned>(H), 1);
  for (int64_t s = 0; s < cpSize; ++s) {
    ASSERT_TRUE(rt::ringAttentionForward(q.data(), ks[s].data(), vs[s].data(), oRef.data(),
                                         lseRef.data(), B, local, H, KH, D, scale, true, cp, s)
                    .isOk());
    launch(grid, dim3(64), [&] {
      cu::attentionForwardKernel<32, 32>(q.data(), ks[s].data(), vs[s].data(), o.data(),
                                         lse.data(), L, cu::RingStep{cp, s, true}, scale);
    });
  }
  EXPECT_TRUE(close(o, oRef, 1e-3)) << "forward";
  EXPECT_TRUE(close(lse, lseRef, 1e-4)) << "log-sum-exp";
  std::vector<float> dqRef(q.size()), dq(q.size()), delta(B * H * local);
  launch(dim3(4), dim3(256),
         [&] { cu::attentionDeltaKernel(oRef.data(), dout.data(), delta.data(), L, B); });
  for (int64_t s = 0; s < cpSize; ++s) {
    std::vector<float> dkRef(ks[s].size()), dvRef(dkRef.size()), dk(dkRef.size()),
        dv(dkRef.size());
    ASSERT_TRUE(rt::ringAttentionBackward(q.data(), ks[s].data(), vs[s].data(),
                                          {oRef.data(), lseRef.data()}, dout.data(),
                                          dqRef.data(), dkRef.data(), dvRef.data(), B, local,
                                          H, KH, D, scale, true, cp, s)
                    .isOk());
    const cu::RingStep step{cp, s, true};
    launch(grid, dim3(64), [&] {
      cu::attentionDqKernel<32, 32>(q.data(), ks[s].data(), vs[s].data(), lseRef.data(),
                                    delta.data(), dout.data(), dq.data(), L, step, scale);
    });
    dim3 gridK(static_cast<unsigned>((local + 63) / 64), static_cast<unsigned>(KH), 1);
    launch(gridK, dim3(64), [&] {
      cu::attentionDkDvKernel<32, 32>(q.data(), ks[s].data(), vs[s].data(), lseRef.data(),
                                      delta.data(), dout.data(), dk.data(), dv.data(), L, step,
                                      scale);
    });
    EXPECT_TRUE(close(dk, dkRef, 1e-2)) << "dk, step " << s;
    EXPECT_TRUE(close(dv, dvRef, 1e-2)) << "dv, step " << s;
  }
  EXPECT_TRUE(close(dq, dqRef, 1e-2)) << "dq";
}

TEST(CudaKernelEmulation, RingAttention) {
  checkRingAttention(2, 0, 2);
  checkRingAttention(2, 1, 4);
  checkRingAttention(4, 2, 2);
}

/// launchColumnSum's two passes.
void columnSum(int mode, const float *x, const float *y, const float *mean,
               const float *rstd, float *out, int64_t rows, int64_t cols) {
  std::vector<float> partial(cu::kColSumChunks * cols);
  const int chunks = static_cast<int>(std::min<int64_t>(cu::kColSumChunks, rows));
  const int64_t perChunk = (rows + chunks - 1) / chunks;
  const int used = static_cast<int>((rows + perChunk - 1) / perChunk);
  launch(dim3(static_cast<unsigned>((cols + 255) / 256), chunks), dim3(256), [&] {
    cu::columnSumPartialKernel(mode, x, y, mean, rstd, partial.data(), rows, cols, perChunk);
  });
  launch(dim3(2), dim3(256),
         [&] { cu::columnSumFinalKernel(partial.data(), out, cols, used); });
}

// Row kernels run with 64-thread blocks here (any multiple of 32 works; the
// emulation's cost grows with threads x barriers).
TEST(CudaKernelEmulation, NormsForwardBackward) {
  const int64_t R = 13, C = 300;
  auto x = rnd(R * C, 1, 2), g = rnd(C, 2), b = rnd(C, 3), dy = rnd(R * C, 4);
  std::vector<float> y(R * C), yRef(R * C);
  ASSERT_TRUE(rt::layerNormForward(x.data(), g.data(), b.data(), yRef.data(), nullptr, nullptr,
                                   R, C, 1e-5f)
                  .isOk());
  launch(dim3(5), dim3(64), [&] {
    cu::layerNormKernel(x.data(), g.data(), b.data(), y.data(), nullptr, nullptr, R, C, 1e-5f);
  });
  EXPECT_TRUE(close(y, yRef, 1e-4)) << "layer_norm";
  ASSERT_TRUE(rt::rmsNormForward(x.data(), g.data(), yRef.data(), nullptr, R, C, 1e-5f).isOk());
  launch(dim3(5), dim3(64),
         [&] { cu::rmsNormKernel(x.data(), g.data(), y.data(), nullptr, R, C, 1e-5f); });
  EXPECT_TRUE(close(y, yRef, 1e-4)) << "rms_norm";

  std::vector<float> mean(R), rstd(R), dxRef(R * C), dgRef(C), dbRef(C);
  ASSERT_TRUE(rt::layerNormForward(x.data(), g.data(), std::vector<float>(C).data(), y.data(),
                                   mean.data(), rstd.data(), R, C, 1e-5f)
                  .isOk());
  ASSERT_TRUE(rt::layerNormBackward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(),
                                    dxRef.data(), dgRef.data(), dbRef.data(), R, C)
                  .isOk());
  std::vector<float> dx(R * C), m(R), r(R), dg(C), db(C);
  launch(dim3(3), dim3(64), [&] {
    cu::layerNormGradXKernel(x.data(), g.data(), dy.data(), dx.data(), m.data(), r.data(), R,
                             C, 1e-5f);
  });
  columnSum(2, dy.data(), x.data(), m.data(), r.data(), dg.data(), R, C);
  columnSum(0, dy.data(), nullptr, nullptr, nullptr, db.data(), R, C);
  EXPECT_TRUE(close(dx, dxRef, 1e-4)) << "layer_norm_grad dx";
  EXPECT_TRUE(close(dg, dgRef, 1e-4)) << "layer_norm_grad dgamma";
  EXPECT_TRUE(close(db, dbRef, 1e-4)) << "layer_norm_grad dbeta";

  std::vector<float> rs(R), dxRms(R * C), dwRef(C), dw(C);
  ASSERT_TRUE(rt::rmsNormForward(x.data(), g.data(), y.data(), rs.data(), R, C, 1e-6f).isOk());
  ASSERT_TRUE(rt::rmsNormBackward(dy.data(), x.data(), g.data(), rs.data(), dxRef.data(),
                                  dwRef.data(), R, C)
                  .isOk());
  launch(dim3(3), dim3(64), [&] {
    cu::rmsNormGradXKernel(x.data(), g.data(), dy.data(), dxRms.data(), r.data(), R, C, 1e-6f);
  });
  columnSum(3, dy.data(), x.data(), nullptr, r.data(), dw.data(), R, C);
  EXPECT_TRUE(close(dxRms, dxRef, 1e-4)) << "rms_norm_grad dx";
  EXPECT_TRUE(close(dw, dwRef, 1e-4)) << "rms_norm_grad dweight";
}

/// addNormKernel with storage S against the add then the CPU norm, on the sum
/// rounded to S; `vec` the 128-bit path (C a multiple of 8, vectors 16-aligned).
template <typename S>
void checkAddNorm(bool rms, int64_t C, bool vec, float (*toF)(typename S::T),
                  typename S::T (*fromF)(float), double tol) {
  SCOPED_TRACE(std::string(rms ? "rms" : "layer") + " C " + std::to_string(C) +
               (vec ? " vec" : " scalar") + " bytes " + std::to_string(sizeof(typename S::T)));
  using T = typename S::T;
  const int64_t R = 5;
  auto stored = [&](const std::vector<float> &x) {
    std::vector<T> out(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      out[i] = fromF(x[i]);
    return out;
  };
  auto a = stored(rnd(R * C, 11)), b = stored(rnd(R * C, 12)), g = stored(rnd(C, 13)),
       beta = stored(rnd(C, 14));
  std::vector<T> sum(R * C), y(R * C);
  launch(dim3(2), dim3(64), [&] {
    if (rms)
      cu::addNormKernel<S, true>(a.data(), b.data(), g.data(), nullptr, sum.data(), y.data(), R,
                                 C, 1e-5f, vec);
    else
      cu::addNormKernel<S, false>(a.data(), b.data(), g.data(), beta.data(), sum.data(),
                                  y.data(), R, C, 1e-5f, vec);
  });
  std::vector<float> sumRef(R * C), gf(C), betaf(C), yRef(R * C), yGot(R * C), sumGot(R * C);
  for (int64_t i = 0; i < R * C; ++i) {
    sumRef[i] = toF(fromF(toF(a[i]) + toF(b[i])));
    sumGot[i] = toF(sum[i]);
    yGot[i] = toF(y[i]);
  }
  for (int64_t c = 0; c < C; ++c) {
    gf[c] = toF(g[c]);
    betaf[c] = toF(beta[c]);
  }
  EXPECT_EQ(sumGot, sumRef) << "sum";
  ASSERT_TRUE((rms ? rt::rmsNormForward(sumRef.data(), gf.data(), yRef.data(), nullptr, R, C, 1e-5f)
                   : rt::layerNormForward(sumRef.data(), gf.data(), betaf.data(), yRef.data(),
                                          nullptr, nullptr, R, C, 1e-5f))
                  .isOk());
  EXPECT_TRUE(close(yGot, yRef, tol)) << "norm of the sum";
}

float f32Id(float v) { return v; }

TEST(CudaKernelEmulation, AddNormFusedF32AndBf16) {
  for (bool rms : {false, true})
    for (auto [C, vec] : {std::pair<int64_t, bool>{264, true}, {264, false}, {37, false}}) {
      checkAddNorm<cu::F32Storage>(rms, C, vec, f32Id, f32Id, 1e-4);
      checkAddNorm<cu::Bf16Storage>(rms, C, vec, rt::bfloat16ToFloat, rt::floatToBfloat16, 2e-2);
      checkAddNorm<cu::F16Storage>(rms, C, vec, rt::halfToFloat, rt::floatToHalf, 5e-3);
    }
}

TEST(CudaKernelEmulation, SoftmaxAndCrossEntropy) {
  const int64_t R = 13, V = 1001;
  auto l = rnd(R * V, 5, 3);
  std::vector<float> y(R * V), yRef(R * V);
  ASSERT_TRUE(rt::softmaxForward(l.data(), yRef.data(), R, V).isOk());
  launch(dim3(4), dim3(64), [&] { cu::softmaxKernel(l.data(), y.data(), R, V); });
  EXPECT_TRUE(close(y, yRef, 1e-4)) << "softmax";

  std::vector<int64_t> labels(R);
  for (int64_t r = 0; r < R; ++r)
    labels[r] = (r * 7919) % V;
  float lossRef = 0;
  ASSERT_TRUE(
      rt::crossEntropyForward(l.data(), labels.data(), R, V, &lossRef, nullptr, nullptr).isOk());
  std::vector<float> rowLoss(R), loss(1);
  unsigned long long badPos = ULLONG_MAX;
  launch(dim3(5), dim3(64), [&] {
    cu::crossEntropyRowsKernel<cu::F32Storage>(l.data(), labels.data(), true, rowLoss.data(), R,
                                                V, true, &badPos);
  });
  launch(dim3(1), dim3(64),
         [&] { cu::sumRowsToScalarKernel(rowLoss.data(), loss.data(), R, false); });
  EXPECT_TRUE(close(loss, {lossRef}, 1e-5)) << "cross_entropy";
  EXPECT_EQ(badPos, ULLONG_MAX);

  std::vector<float> dl(R * V), dlRef(R * V), dloss{0.75f};
  ASSERT_TRUE(rt::crossEntropyBackward(l.data(), labels.data(), nullptr, 0.75f, dlRef.data(), R,
                                       V, 0)
                  .isOk());
  launch(dim3(5), dim3(64), [&] {
    cu::crossEntropyGradKernel<cu::F32Storage>(l.data(), labels.data(), true, dloss.data(),
                                               dl.data(), R, V, false, true);
  });
  EXPECT_TRUE(close(dl, dlRef, 1e-4)) << "cross_entropy_grad";

  std::vector<int32_t> narrow(labels.begin(), labels.end());
  narrow[3] = static_cast<int32_t>(V);
  narrow[9] = -1;
  launch(dim3(5), dim3(64), [&] {
    cu::crossEntropyRowsKernel<cu::F32Storage>(l.data(), narrow.data(), false, rowLoss.data(),
                                                R, V, true, &badPos);
  });
  EXPECT_EQ(badPos, 3u) << "the first bad label's position";
}

// Vocab-parallel cross-entropy over two shards of 40 columns (75 real + 5
// padding): partial + all-reduce + finalize equals the full loss over 75 columns,
// and the partial gradients equal the full gradient.
TEST(CudaKernelEmulation, VocabParallelCrossEntropyEqualsFull) {
  const int64_t R = 11, cols = 40, V = 75;
  auto full = rnd(R * 2 * cols, 20, 3);
  std::vector<float> real(R * V);
  for (int64_t r = 0; r < R; ++r)
    std::copy(full.begin() + r * 2 * cols, full.begin() + r * 2 * cols + V, real.begin() + r * V);
  std::vector<int64_t> labels(R);
  for (int64_t r = 0; r < R; ++r)
    labels[r] = (r * 31 + 7) % V;
  float lossRef = 0;
  ASSERT_TRUE(
      rt::crossEntropyForward(real.data(), labels.data(), R, V, &lossRef, nullptr, nullptr).isOk());
  std::vector<float> dRef(R * V);
  ASSERT_TRUE(
      rt::crossEntropyBackward(real.data(), labels.data(), nullptr, 1.0f, dRef.data(), R, V, 0)
          .isOk());

  std::vector<std::vector<float>> shard(2, std::vector<float>(R * cols));
  std::vector<float> m(R, -INFINITY), sumExp(R, 0), target(R, 0);
  for (int i = 0; i < 2; ++i)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        shard[i][r * cols + c] = full[r * 2 * cols + i * cols + c];
        if (i * cols + c < V) // the compiler's max ignores padding too
          m[r] = std::max(m[r], shard[i][r * cols + c]);
      }
  unsigned long long badPos = ULLONG_MAX;
  for (int i = 0; i < 2; ++i) {
    std::vector<float> s(R), t(R);
    const int64_t first = i * cols, valid = std::clamp<int64_t>(V - first, 0, cols);
    launch(dim3(3), dim3(64), [&] {
      cu::crossEntropyPartialKernel<cu::F32Storage>(shard[i].data(), labels.data(), true,
                                                    m.data(), s.data(), t.data(), R, cols,
                                                    first, valid, V, true, &badPos);
    });
    for (int64_t r = 0; r < R; ++r) { // the all-reduce
      sumExp[r] += s[r];
      target[r] += t[r];
    }
  }
  EXPECT_EQ(badPos, ULLONG_MAX);
  std::vector<float> loss(1), dloss{1.0f}, ds(R), dt(R);
  launch(dim3(1), dim3(64), [&] {
    cu::crossEntropyFinalizeKernel(m.data(), sumExp.data(), target.data(), loss.data(), R,
                                   false);
  });
  EXPECT_TRUE(close(loss, {lossRef}, 1e-5)) << "finalize";
  launch(dim3(1), dim3(64), [&] {
    cu::crossEntropyFinalizeGradKernel(sumExp.data(), dloss.data(), ds.data(), dt.data(), R,
                                       false);
  });
  std::vector<float> grad(R * V);
  for (int i = 0; i < 2; ++i) {
    std::vector<float> dl(R * cols);
    const int64_t first = i * cols, valid = std::clamp<int64_t>(V - first, 0, cols);
    launch(dim3(2), dim3(64), [&] {
      cu::crossEntropyPartialGradKernel<cu::F32Storage>(shard[i].data(), labels.data(), true,
                                                        m.data(), ds.data(), dt.data(),
                                                        dl.data(), R, cols, first, valid, true);
    });
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        if (first + c < V)
          grad[r * V + first + c] = dl[r * cols + c];
        else
          EXPECT_EQ(dl[r * cols + c], 0.0f) << "padding column";
      }
  }
  EXPECT_TRUE(close(grad, dRef, 1e-4)) << "partial gradients";

  std::vector<int32_t> ids{0, 5, 74, 75, -2};
  badPos = ULLONG_MAX;
  launch(dim3(1), dim3(64),
         [&] { cu::checkIdsKernel(ids.data(), false, 5, V, &badPos); });
  EXPECT_EQ(badPos, 3u);
}

TEST(CudaKernelEmulation, RopeEmbeddingAdamw) {
  // RoPE with the tables CudaBackend::ropeTables computes.
  const int64_t B = 2, S = 9, H = 3, D = 8, half = D / 2, offset = 3;
  const double theta = 10000;
  auto in = rnd(B * S * H * D, 6);
  std::vector<float> cosT(S * half), sinT(S * half), invFreq(half);
  for (int64_t i = 0; i < half; ++i)
    invFreq[i] = 1.0f / std::pow(static_cast<float>(theta),
                                 static_cast<float>(2 * i) / static_cast<float>(D));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(offset + s) * invFreq[i];
      cosT[s * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sinT[s * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  for (bool inverse : {false, true}) {
    std::vector<float> y(in.size()), yRef(in.size());
    ASSERT_TRUE((inverse ? rt::ropeBackward : rt::ropeForward)(in.data(), yRef.data(), B, S, H,
                                                                D, theta, offset)
                    .isOk());
    launch(dim3(2), dim3(64), [&] {
      cu::ropeKernel(in.data(), y.data(), cosT.data(), sinT.data(), B * S * H * half, S, H, D,
                     inverse ? -1.0f : 1.0f);
    });
    EXPECT_EQ(y, yRef) << (inverse ? "rope_grad" : "rope");
  }

  const int64_t N = 50, V = 20, dim = 24;
  std::vector<int64_t> ids(N);
  for (int64_t i = 0; i < N; ++i)
    ids[i] = (i * 13) % V;
  auto dout = rnd(N * dim, 7);
  std::vector<float> dt(V * dim, 0.0f), dtRef(V * dim, 0.0f);
  ASSERT_TRUE(rt::embeddingBackward(ids.data(), dout.data(), dtRef.data(), N, V, dim).isOk());
  launch(dim3(1), dim3(64), [&] {
    cu::embeddingGradKernel(ids.data(), true, dout.data(), dt.data(), N, V, dim, 0);
  });
  EXPECT_EQ(dt, dtRef) << "embedding_grad (same summation order)";

  // AdamW with CudaBackend's host-side scalars: bit-identical to adamwUpdate
  // here (the device may contract to FMAs).
  const int64_t n = 777;
  auto p = rnd(n, 8), grad = rnd(n, 9), m = rnd(n, 10, 0.01f), v = rnd(n, 11, 0.01f);
  for (float &z : v)
    z = std::fabs(z);
  auto p2 = p, m2 = m, v2 = v;
  const float lr = 1e-2f, wd = 0.1f, b1f = 0.9f, b2f = 0.95f, eps = 1e-8f;
  const int64_t step = 3;
  // Clipping active: the device computes clipCoefficient itself.
  const float normSq = 4.0f, maxNorm = 0.5f;
  ASSERT_TRUE(rt::adamwUpdate(p.data(), grad.data(), m.data(), v.data(), n, lr, b1f, b2f, eps,
                              wd, step, rt::clipCoefficient(normSq, maxNorm))
                  .isOk());
  const double lrD = lr, b1 = b1f, b2 = b2f;
  const double bc1 = 1 - std::pow(b1, static_cast<double>(step)),
               bc2 = 1 - std::pow(b2, static_cast<double>(step));
  launch(dim3(2), dim3(64), [&] {
    cu::adamwKernel(p2.data(), grad.data(), m2.data(), v2.data(), n,
                    static_cast<float>(1 - lrD * wd), b1f, b2f, static_cast<float>(1 - b1),
                    static_cast<float>(1 - b2), static_cast<float>(std::sqrt(bc2)),
                    static_cast<float>(lrD / bc1), eps, &normSq, maxNorm, 0.0f);
  });
  EXPECT_TRUE(close(p2, p, 1e-6));
  EXPECT_TRUE(close(m2, m, 1e-6));
  EXPECT_TRUE(close(v2, v, 1e-6));

  // f16 loss scaling: gradients 1024x the true ones are unscaled (and the
  // clipping norm with them); an infinite norm leaves everything unchanged.
  const float lossScale = 1024.0f, scaledNormSq = normSq * lossScale * lossScale;
  auto scaledGrad = grad;
  for (float &g : scaledGrad)
    g *= lossScale;
  auto p3 = p2, m3 = m2, v3 = v2, p4 = p2, m4 = m2, v4 = v2;
  ASSERT_TRUE(rt::adamwUpdate(p4.data(), grad.data(), m4.data(), v4.data(), n, lr, b1f, b2f,
                              eps, wd, step, rt::clipCoefficient(normSq, maxNorm))
                  .isOk());
  auto adamwScaled = [&](const float *nsq) {
    launch(dim3(2), dim3(64), [&] {
      cu::adamwKernel(p3.data(), scaledGrad.data(), m3.data(), v3.data(), n,
                      static_cast<float>(1 - lrD * wd), b1f, b2f, static_cast<float>(1 - b1),
                      static_cast<float>(1 - b2), static_cast<float>(std::sqrt(bc2)),
                      static_cast<float>(lrD / bc1), eps, nsq, maxNorm, 1.0f / lossScale);
    });
  };
  const float infNorm = INFINITY;
  adamwScaled(&infNorm);
  EXPECT_EQ(p3, p2) << "an overflowed step must not update";
  EXPECT_EQ(m3, m2);
  adamwScaled(&scaledNormSq);
  EXPECT_TRUE(close(p3, p4, 1e-6)) << "unscaled update";
  EXPECT_TRUE(close(m3, m4, 1e-6));
  EXPECT_TRUE(close(v3, v4, 1e-6));
}

TEST(CudaKernelEmulation, AdamwMulti) {
  // Two parameters (decay on the first) in one launch, clipping active: each
  // as adamwUpdate computes it (the device may contract to FMAs).
  const float lr = 1e-2f, wd = 0.1f, b1f = 0.9f, b2f = 0.95f, eps = 1e-8f;
  const float normSq = 4.0f, maxNorm = 0.5f;
  const int64_t step = 3, sizes[2] = {777, 100};
  const double lrD = lr, b1 = b1f, b2 = b2f;
  const double bc1 = 1 - std::pow(b1, static_cast<double>(step)),
               bc2 = 1 - std::pow(b2, static_cast<double>(step));
  const cu::AdamwScalars a{b1f, b2f, static_cast<float>(1 - b1), static_cast<float>(1 - b2),
                           static_cast<float>(std::sqrt(bc2)), static_cast<float>(lrD / bc1),
                           eps};
  std::vector<float> p[2], g[2], m[2], v[2];
  cu::AdamwTensors t;
  for (int k = 0; k < 2; ++k) {
    p[k] = rnd(sizes[k], 20 + k);
    g[k] = rnd(sizes[k], 30 + k);
    m[k] = rnd(sizes[k], 40 + k, 0.01f);
    v[k] = rnd(sizes[k], 50 + k, 0.01f);
    for (float &z : v[k])
      z = std::fabs(z);
    t.param[k] = p[k].data();
    t.grad[k] = g[k].data();
    t.m[k] = m[k].data();
    t.v[k] = v[k].data();
    t.n[k] = sizes[k];
    t.decay[k] = static_cast<float>(1 - lrD * (k == 0 ? wd : 0.0f));
  }
  t.count = 2;
  auto pRef = p, mRef = m, vRef = v;
  for (int k = 0; k < 2; ++k)
    ASSERT_TRUE(rt::adamwUpdate(pRef[k].data(), g[k].data(), mRef[k].data(), vRef[k].data(),
                                sizes[k], lr, b1f, b2f, eps, k == 0 ? wd : 0.0f, step,
                                rt::clipCoefficient(normSq, maxNorm))
                    .isOk());
  unsigned long long bad = ~0ull;
  launch(dim3(2, 2), dim3(64), [&] {
    cu::adamwMultiKernel(t, 0, a, &normSq, maxNorm, 0.0f, &bad);
  });
  EXPECT_EQ(bad, ~0ull) << "finite gradients flagged";
  for (int k = 0; k < 2; ++k) {
    EXPECT_TRUE(close(p[k], pRef[k], 1e-6)) << "parameter " << k;
    EXPECT_TRUE(close(m[k], mRef[k], 1e-6)) << "parameter " << k;
    EXPECT_TRUE(close(v[k], vRef[k], 1e-6)) << "parameter " << k;
  }

  // The fused check: the first non-finite gradient as (index << 40 | element),
  // the launch's tensors numbered from firstIndex (a later chunk of a group).
  g[1][42] = INFINITY;
  g[1][17] = std::nanf("");
  launch(dim3(2, 2), dim3(64), [&] {
    cu::adamwMultiKernel(t, 80, a, nullptr, 0.0f, 0.0f, &bad);
  });
  EXPECT_EQ(bad, (81ull << 40) | 17ull);
}

TEST(CudaKernelEmulation, KvCache) {
  const int64_t B = 2, S = 3, H = 4, KH = 2, M = 8, D = 8;
  std::vector<int64_t> start{1, 4};
  auto q = rnd(B * S * H * D, 12), kc = rnd(B * KH * M * D, 13), vc = rnd(B * KH * M * D, 14);
  std::vector<float> o(q.size()), oRef(q.size()), scores(B * H * S * M);
  ASSERT_TRUE(rt::cacheAttentionForward(q.data(), kc.data(), vc.data(), start.data(),
                                        oRef.data(), B, S, H, KH, M, D, 0.35f)
                  .isOk());
  launch(dim3(static_cast<unsigned>(B * H * S)), dim3(64), [&] {
    cu::cacheAttentionKernel(q.data(), kc.data(), vc.data(), start.data(), true, o.data(),
                             scores.data(), S, H, KH, M, D, 0.35f);
  });
  EXPECT_TRUE(close(o, oRef, 1e-4)) << "cache_attention";
  auto x = rnd(B * S * KH * D, 15);
  auto cache = kc, cacheRef = kc;
  ASSERT_TRUE(
      rt::kvCacheWrite(x.data(), start.data(), cacheRef.data(), B, S, KH, M, D).isOk());
  launch(dim3(2), dim3(64), [&] {
    cu::kvCacheWriteKernel(x.data(), start.data(), true, cache.data(), B * S * KH * D, S, KH,
                           M, D);
  });
  EXPECT_EQ(cache, cacheRef) << "kv_cache_write";
}

} // namespace

namespace {

/// Bits of a float.
uint32_t bitsOf(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

} // namespace

// The staging convert kernels (mixed precision) against the CPU's rounding.
TEST(CudaKernelEmulation, ConvertBf16RoundsLikeTheCpu) {
  std::vector<float> x = rnd(300, 11, 100.0f);
  // Ties (round to even both ways), signed zeros, inf, NaN, the largest floats.
  for (uint32_t b : {0x3f808000u, 0x3f818000u, 0x80000000u, 0x00000000u, 0x7f800000u,
                     0xff800000u, 0x7fc00001u, 0x7f7fffffu, 0x00000001u})
  {
    float v;
    std::memcpy(&v, &b, sizeof v);
    x.push_back(v);
  }
  std::vector<uint16_t> y(x.size());
  std::vector<float> back(x.size());
  launch(dim3(2), dim3(64), [&] {
    cu::castToBf16Kernel(x.data(), y.data(), static_cast<int64_t>(x.size()));
  });
  launch(dim3(2), dim3(64), [&] {
    cu::castFromBf16Kernel(y.data(), back.data(), static_cast<int64_t>(y.size()));
  });
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(y[i], rt::floatToBfloat16(x[i])) << "element " << i << " = " << x[i];
    EXPECT_EQ(bitsOf(back[i]), bitsOf(rt::bfloat16ToFloat(y[i]))) << "element " << i;
  }
}

TEST(CudaKernelEmulation, ConvertF16RoundTripsEveryHalfAndRoundsTiesToEven) {
  // Every finite half widens exactly (as the CPU's halfToFloat) and narrows back.
  std::vector<uint16_t> all;
  for (uint32_t h = 0; h < 0x10000u; ++h)
    if ((h & 0x7c00u) != 0x7c00u)
      all.push_back(static_cast<uint16_t>(h));
  const int64_t n = static_cast<int64_t>(all.size());
  std::vector<float> wide(all.size());
  std::vector<uint16_t> narrow(all.size());
  launch(dim3(4), dim3(64), [&] { cu::castFromF16Kernel(all.data(), wide.data(), n); });
  launch(dim3(4), dim3(64), [&] { cu::castToF16Kernel(wide.data(), narrow.data(), n); });
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(bitsOf(wide[i]), bitsOf(rt::halfToFloat(all[i]))) << "half " << all[i];
    ASSERT_EQ(narrow[i], all[i]) << "half " << all[i];
  }
  // Midpoints between neighbouring positive halves go to the even one; just
  // above a midpoint goes up; 65520 and beyond overflow to inf.
  std::vector<float> mids;
  std::vector<uint16_t> want;
  for (uint16_t h : {uint16_t(0x0001), uint16_t(0x03ff), uint16_t(0x3c00), uint16_t(0x3c01),
                     uint16_t(0x7bfe)}) {
    const float lo = rt::halfToFloat(h), hi = rt::halfToFloat(static_cast<uint16_t>(h + 1));
    const float mid = lo + (hi - lo) / 2;
    mids.push_back(mid);
    want.push_back((h & 1u) ? static_cast<uint16_t>(h + 1) : h);
    mids.push_back(std::nextafter(mid, hi));
    want.push_back(static_cast<uint16_t>(h + 1));
  }
  mids.push_back(65520.0f);
  want.push_back(0x7c00u);
  mids.push_back(-1e10f);
  want.push_back(0xfc00u);
  std::vector<uint16_t> got(mids.size());
  launch(dim3(1), dim3(32), [&] {
    cu::castToF16Kernel(mids.data(), got.data(), static_cast<int64_t>(mids.size()));
  });
  for (size_t i = 0; i < mids.size(); ++i)
    EXPECT_EQ(got[i], want[i]) << "value " << mids[i];
}
