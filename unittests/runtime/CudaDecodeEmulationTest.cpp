// The CUDA backend's decode and step-graph kernels run on the CPU
// (HostEmulation.h) against the CPU kernels: split-K cache attention
// (DecodeAttentionKernels.cuh) for f32, bf16 and f16 caches, and AdamW reading a
// replayed step graph's scalars from device memory (AdamwLive).
#define LLMIR_CUDA_HOST_EMULATION 1
#include "DecodeAttentionKernels.cuh"
#include "ElementwiseKernels.cuh"

#include "llmir/runtime/Float16.h"
#include "llmir/runtime/Kernels.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace cu = llmir::runtime::cuda;
namespace rt = llmir::runtime;
using cu::emulation::launch;

namespace {

std::vector<float> rnd(size_t n, unsigned seed, float stddev = 1.0f) {
  return rt::testing::randomVector(n, seed, 0.0f, stddev);
}

/// |a - b| <= tol (1e-3 + |b|) everywhere.
::testing::AssertionResult close(const std::vector<float> &a, const std::vector<float> &b,
                                 double tol) {
  return rt::testing::allClose(a, b, 1e-3 * tol, tol);
}

float f32Id(float v) { return v; }

} // namespace

namespace {

/// Split-K cache attention (DecodeAttentionKernels.cuh) with storage S against
/// the CPU kernel on the caches rounded to S: decode (seq 1) and a 2-query
/// block, GQA ratios 1, 2 and 4, visible lengths inside one chunk, at its end,
/// just past it and over three chunks (maxSeq 700: 3 chunks, the last partial).
/// (Few cases, 32-thread blocks: the emulation starts a thread per CUDA thread.)
template <typename S>
void checkSplitCacheAttention(float (*toF)(typename S::T), typename S::T (*fromF)(float),
                              double tol) {
  using T = typename S::T;
  const int64_t B = 2, H = 4, M = 700, D = 16;
  const float scale = 0.25f;
  for (auto [S_, KH] : {std::pair<int64_t, int64_t>{1, 4}, {1, 2}, {2, 1}})
    for (auto [s0, s1] : {std::pair<int64_t, int64_t>{0, 254}, {255, 256}, {600, 697}}) {
      SCOPED_TRACE("seq " + std::to_string(S_) + " kvHeads " + std::to_string(KH) +
                   " starts " + std::to_string(s0) + "," + std::to_string(s1));
      std::vector<int64_t> start{s0, s1};
      auto round = [&](std::vector<float> v, std::vector<T> &stored) {
        stored.resize(v.size());
        for (size_t i = 0; i < v.size(); ++i) {
          stored[i] = fromF(v[i]);
          v[i] = toF(stored[i]);
        }
        return v;
      };
      std::vector<T> q, kc, vc;
      auto qf = round(rnd(B * S_ * H * D, 21), q), kf = round(rnd(B * KH * M * D, 22), kc),
           vf = round(rnd(B * KH * M * D, 23), vc);
      std::vector<float> ref(qf.size());
      ASSERT_TRUE(rt::cacheAttentionForward(qf.data(), kf.data(), vf.data(), start.data(),
                                            ref.data(), B, S_, H, KH, M, D, scale)
                      .isOk());
      const int64_t tasks = B * H * S_, chunks = cu::splitCacheChunks(M);
      ASSERT_EQ(chunks, 3);
      std::vector<float> partial(cu::splitCachePartialFloats(B, S_, H, M, D), NAN);
      std::vector<T> out(qf.size());
      launch(dim3(static_cast<unsigned>(tasks), static_cast<unsigned>(chunks)), dim3(32), [&] {
        cu::cacheAttentionSplitKernel<S>(q.data(), kc.data(), vc.data(), start.data(), true,
                                         partial.data(), S_, H, KH, M, D, scale);
      });
      launch(dim3(static_cast<unsigned>(tasks)), dim3(32), [&] {
        cu::cacheAttentionCombineKernel<S>(partial.data(), out.data(), chunks, S_, H, D);
      });
      std::vector<float> got(out.size());
      for (size_t i = 0; i < out.size(); ++i)
        got[i] = toF(out[i]);
      EXPECT_TRUE(close(got, ref, tol));
    }
}

} // namespace

TEST(CudaKernelEmulation, SplitKCacheAttentionF32Bf16F16) {
  checkSplitCacheAttention<cu::F32Storage>(f32Id, f32Id, 1e-4);
  checkSplitCacheAttention<cu::Bf16Storage>(rt::bfloat16ToFloat, rt::floatToBfloat16, 2e-2);
  checkSplitCacheAttention<cu::F16Storage>(rt::halfToFloat, rt::floatToHalf, 5e-3);
}

TEST(CudaKernelEmulation, SplitKCacheAttentionIsChosenForLongCachesAndFewQueries) {
  EXPECT_TRUE(cu::useSplitCacheAttention(1, 1, 12, 1024));  // GPT-2 decode, batch 1
  EXPECT_TRUE(cu::useSplitCacheAttention(8, 1, 32, 4096));  // 256 queries
  EXPECT_FALSE(cu::useSplitCacheAttention(16, 1, 32, 4096)); // enough blocks already
  EXPECT_FALSE(cu::useSplitCacheAttention(1, 1, 12, 256));   // one chunk: nothing to split
  EXPECT_FALSE(cu::useSplitCacheAttention(1, 64, 12, 1024)); // a prefill block
}

// A replayed step graph's AdamW reads its scalars from device memory
// (AdamwLive, decay as flags): the same result, bit for bit, as the values
// passed by value, for the single and the multi-tensor kernel.
TEST(CudaKernelEmulation, AdamwLiveScalarsEqualTheLaunchValues) {
  const cu::AdamwScalars a{0.9f, 0.95f, 0.1f, 0.05f, 0.3f, 0.02f, 1e-8f};
  const float decayed = 0.999f, normSq = 4.0f, maxNorm = 0.5f;
  const cu::AdamwLive live{a, decayed, maxNorm, 0.0f};
  const int64_t n = 300;
  auto make = [&](int seed) {
    std::vector<float> p = rnd(n, seed), g = rnd(n, seed + 1), m = rnd(n, seed + 2, 0.01f),
                       v = rnd(n, seed + 3, 0.01f);
    for (float &z : v)
      z = std::fabs(z);
    return std::vector<std::vector<float>>{p, g, m, v};
  };
  for (bool decay : {true, false}) {
    auto byValue = make(60), fromLive = byValue;
    launch(dim3(2), dim3(64), [&] {
      cu::adamwKernel(byValue[0].data(), byValue[1].data(), byValue[2].data(), byValue[3].data(),
                      n, decay ? decayed : 1.0f, a.beta1, a.beta2, a.oneMinusB1, a.oneMinusB2,
                      a.bc2Sqrt, a.stepSize, a.eps, &normSq, maxNorm, 0.0f);
    });
    // Junk in the by-value scalars: the kernel must take the live ones.
    launch(dim3(2), dim3(64), [&] {
      cu::adamwKernel(fromLive[0].data(), fromLive[1].data(), fromLive[2].data(),
                      fromLive[3].data(), n, decay ? 1.0f : 0.0f, 7, 7, 7, 7, 7, 7, 7, &normSq,
                      -1.0f, 5.0f, &live);
    });
    EXPECT_EQ(fromLive, byValue) << "adamw, decay " << decay;
  }
  auto p0 = make(70), p1 = make(80), q0 = p0, q1 = p1;
  cu::AdamwTensors t, tl;
  for (auto [k, w, wl] : {std::tuple{0, &p0, &q0}, std::tuple{1, &p1, &q1}}) {
    t.param[k] = (*w)[0].data();
    t.grad[k] = (*w)[1].data();
    t.m[k] = (*w)[2].data();
    t.v[k] = (*w)[3].data();
    tl.param[k] = (*wl)[0].data();
    tl.grad[k] = (*wl)[1].data();
    tl.m[k] = (*wl)[2].data();
    tl.v[k] = (*wl)[3].data();
    t.n[k] = tl.n[k] = n;
    t.decay[k] = k == 0 ? decayed : 1.0f;
    tl.decay[k] = k == 0 ? 1.0f : 0.0f; // flags
  }
  t.count = tl.count = 2;
  launch(dim3(2, 2), dim3(64), [&] {
    cu::adamwMultiKernel(t, 0, a, &normSq, maxNorm, 0.0f, nullptr);
  });
  const cu::AdamwScalars junk{7, 7, 7, 7, 7, 7, 7};
  launch(dim3(2, 2), dim3(64), [&] {
    cu::adamwMultiKernel(tl, 0, junk, &normSq, -1.0f, 5.0f, nullptr, &live);
  });
  EXPECT_EQ(q0, p0) << "adamw_multi, decayed parameter";
  EXPECT_EQ(q1, p1) << "adamw_multi, parameter without decay";
}
