// The CUDA cross-entropy kernels over stored (f32, bf16, f16) logits, run by the
// host emulation (HostEmulation.h) against the CPU kernels on the same stored
// values: vocab sizes that are and are not multiples of a 128-bit piece (8 bf16)
// or of the CPU's row chunk, rows on and off the 16-byte boundary, dlogits
// written over the logits (in place) and beside them, and the vocab-parallel
// split (row max, partial sums, partial gradients) against the full loss.
#define LLMIR_CUDA_HOST_EMULATION 1
#include "LossKernels.cuh"

#include "TestUtil.h"

#include "llmir/runtime/Kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>
#include <vector>

namespace cu = llmir::runtime::cuda;
namespace rt = llmir::runtime;
using cu::emulation::launch;
using rt::ScalarType;

namespace {

template <typename S> std::vector<typename S::T> store(const std::vector<float> &v) {
  std::vector<typename S::T> out(v.size());
  std::transform(v.begin(), v.end(), out.begin(), [](float x) { return S::store(x); });
  return out;
}

template <typename S> std::vector<float> load(const typename S::T *p, size_t n) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i)
    out[i] = S::load(p[i]);
  return out;
}

/// Relative to the largest expected magnitude (dlogits span many decades).
::testing::AssertionResult close(const std::vector<float> &got, const std::vector<float> &want,
                                 double tol) {
  double scale = 0;
  for (float v : want)
    scale = std::max<double>(scale, std::fabs(v));
  return rt::testing::allClose(got, want, tol * scale, tol);
}

/// Rows of `vocab` logits of storage S starting `offset` elements past a
/// 16-byte boundary.
template <typename S> void checkStored(ScalarType dtype, int64_t vocab, int64_t offset,
                                       double tol) {
  using T = typename S::T;
  SCOPED_TRACE(std::string(rt::scalarTypeName(dtype)) + " vocab " + std::to_string(vocab) +
               " offset " + std::to_string(offset));
  const int64_t R = 5, n = R * vocab;
  const std::vector<T> stored = store<S>(rt::testing::randomVector(n, 11, 0.0f, 3.0f));
  std::vector<T> logits(offset + n);
  std::copy(stored.begin(), stored.end(), logits.begin() + offset);
  T *x = logits.data() + offset;
  std::vector<int64_t> labels(R);
  for (int64_t r = 0; r < R; ++r)
    labels[r] = (r * 7919 + 3) % vocab;

  // The oracle: the CPU kernels on the same stored values.
  float lossRef = 0;
  std::vector<float> rowLossRef(R), dRef(n);
  std::vector<T> dRefStored(n);
  ASSERT_TRUE(rt::crossEntropyForwardStored(dtype, x, labels.data(), R, vocab, &lossRef,
                                            rowLossRef.data(), nullptr)
                  .isOk());
  ASSERT_TRUE(rt::crossEntropyBackwardStored(dtype, x, labels.data(), nullptr, 0.75f, dtype,
                                             dRefStored.data(), R, vocab, 0)
                  .isOk());
  dRef = load<S>(dRefStored.data(), n);

  std::vector<float> rowLoss(R), loss(1), dloss{0.75f};
  unsigned long long badPos = ULLONG_MAX;
  launch(dim3(2), dim3(32), [&] {
    cu::crossEntropyRowsKernel<S>(x, labels.data(), true, rowLoss.data(), R, vocab, true,
                                  &badPos);
  });
  launch(dim3(1), dim3(32),
         [&] { cu::sumRowsToScalarKernel(rowLoss.data(), loss.data(), R, false); });
  EXPECT_EQ(badPos, ULLONG_MAX);
  EXPECT_TRUE(close(rowLoss, rowLossRef, 1e-5)) << "per-row loss";
  EXPECT_TRUE(close(loss, {lossRef}, 1e-5)) << "loss";

  // dlogits beside the logits, then over them: the same values.
  std::vector<T> dBeside(offset + n);
  launch(dim3(2), dim3(32), [&] {
    cu::crossEntropyGradKernel<S>(x, labels.data(), true, dloss.data(),
                                  dBeside.data() + offset, R, vocab, false, true);
  });
  const std::vector<float> beside = load<S>(dBeside.data() + offset, n);
  EXPECT_TRUE(close(beside, dRef, tol)) << "dlogits";
  launch(dim3(2), dim3(32), [&] {
    cu::crossEntropyGradKernel<S>(x, labels.data(), true, dloss.data(), x, R, vocab, false,
                                  true);
  });
  EXPECT_TRUE(close(load<S>(x, n), beside, 0)) << "dlogits in place";

  // Vocab-parallel over two shards of `cols` columns, the last one padded (with
  // -inf, so that the row max of a whole shard is that of its valid columns).
  const int64_t cols = (vocab + 1) / 2;
  std::vector<std::vector<T>> shard(2, std::vector<T>(R * cols, S::store(-INFINITY)));
  for (int i = 0; i < 2; ++i)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < cols && i * cols + c < vocab; ++c)
        shard[i][r * cols + c] = stored[r * vocab + i * cols + c];
  std::vector<float> m(R, -INFINITY), sumExp(R, 0), target(R, 0);
  for (int i = 0; i < 2; ++i) {
    std::vector<float> shardMax(R);
    launch(dim3(2), dim3(32),
           [&] { cu::rowMaxKernel<S>(shard[i].data(), shardMax.data(), R, cols, true); });
    for (int64_t r = 0; r < R; ++r) // the max all-reduce
      m[r] = std::max(m[r], shardMax[r]);
  }
  for (int64_t r = 0; r < R; ++r) {
    const std::vector<float> row = load<S>(stored.data() + r * vocab, vocab);
    EXPECT_EQ(m[r], *std::max_element(row.begin(), row.end())) << "row max " << r;
  }
  for (int i = 0; i < 2; ++i) {
    const int64_t first = i * cols, valid = std::clamp<int64_t>(vocab - first, 0, cols);
    std::vector<float> s(R), t(R);
    launch(dim3(2), dim3(32), [&] {
      cu::crossEntropyPartialKernel<S>(shard[i].data(), labels.data(), true, m.data(),
                                       s.data(), t.data(), R, cols, first, valid, vocab, true,
                                       &badPos);
    });
    for (int64_t r = 0; r < R; ++r) { // the sum all-reduces
      sumExp[r] += s[r];
      target[r] += t[r];
    }
  }
  EXPECT_EQ(badPos, ULLONG_MAX);
  double total = 0;
  for (int64_t r = 0; r < R; ++r)
    total += std::log(static_cast<double>(sumExp[r])) + m[r] - target[r];
  EXPECT_TRUE(close({static_cast<float>(total / R)}, {lossRef}, 1e-5)) << "vocab-parallel loss";
  std::vector<float> ds(R), dt(R, -0.75f / R);
  for (int64_t r = 0; r < R; ++r)
    ds[r] = 0.75f / R / sumExp[r];
  std::vector<float> grad(n);
  for (int i = 0; i < 2; ++i) {
    const int64_t first = i * cols, valid = std::clamp<int64_t>(vocab - first, 0, cols);
    launch(dim3(2), dim3(32), [&] { // in place over the shard's logits
      cu::crossEntropyPartialGradKernel<S>(shard[i].data(), labels.data(), true, m.data(),
                                           ds.data(), dt.data(), shard[i].data(), R, cols,
                                           first, valid, true);
    });
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float g = S::load(shard[i][r * cols + c]);
        if (c < valid)
          grad[r * vocab + first + c] = g;
        else
          EXPECT_EQ(g, 0.0f) << "padding column";
      }
  }
  EXPECT_TRUE(close(grad, dRef, tol)) << "vocab-parallel dlogits";
}

// 7 and 1001: no 128-bit piece fits a row evenly; 8: whole pieces; 4099:
// more than the CPU's 2048-element chunk and not a multiple of it or of 8.
// One warp per block (the emulation runs a thread per CUDA thread), two blocks
// for five rows (grid-stride).
TEST(CudaLossEmulation, StoredLogitsForEveryVocab) {
  for (int64_t vocab : {1, 7, 8, 1001, 4099}) {
    for (int64_t offset : {0, 1})
      checkStored<cu::Bf16Storage>(ScalarType::BF16, vocab, offset, 1e-2);
    checkStored<cu::F16Storage>(ScalarType::F16, vocab, 1, 2e-3);
    checkStored<cu::F32Storage>(ScalarType::F32, vocab, 0, 1e-4);
  }
}

} // namespace
