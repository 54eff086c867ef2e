// CPU attention (grouped-query, optional causal mask): per (batch, head, query-row block) two GEMMs around a
// row softmax.
#include "llmir/runtime/Kernels.h"

#include "KernelUtil.h"
#include "VecMath.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace llmir::runtime {
using detail::checkPointer;
using detail::checkProduct;
using detail::checkSize;
using detail::invalid;
using detail::kParallelMinElements;

namespace {

// Query rows per attention task (and per GEMM).
constexpr int64_t kRowBlock = 64;

Status checkAttention(const char *k, int64_t batch, int64_t seq, int64_t heads,
                      int64_t kvHeads, int64_t headDim, float scale) {
  LLMIR_RETURN_IF_ERROR(checkSize(k, "batch", batch));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "seq", seq));
  if (heads <= 0 || kvHeads <= 0 || headDim <= 0)
    return invalid(k, "heads, kvHeads and headDim must be > 0, got " +
                          std::to_string(heads) + ", " + std::to_string(kvHeads) +
                          ", " + std::to_string(headDim));
  if (heads % kvHeads != 0)
    return invalid(k, "heads (" + std::to_string(heads) +
                          ") is not a multiple of kvHeads (" +
                          std::to_string(kvHeads) + ")");
  if (!std::isfinite(scale))
    return invalid(k, "scale is not finite");
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, seq, heads, headDim}));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, heads, seq, seq}));
  return Status::ok();
}

/// Softmax of row[0, valid) in place; row[valid, width) (the causal mask) -> 0.
void maskedSoftmaxRow(float *row, int64_t valid, int64_t width) {
  detail::softmaxRow(row, row, valid);
  std::fill(row + valid, row + width, 0.0f);
}

/// Row-wise masked softmax of the [seq, seq] score block, in place.
void softmaxRows(float *p, int64_t seq, bool causal) {
#pragma omp parallel for schedule(static) if (seq * seq >= kParallelMinElements)
  for (int64_t i = 0; i < seq; ++i)
    maskedSoftmaxRow(p + i * seq, causal ? i + 1 : seq, seq);
}

/// dS = scale * P * (dP - rowsum(P * dP)) for one row, in place over dP.
LLMIR_VECTOR_CLONES
void softmaxBackwardRow(const float *pr, float *dr, int64_t n, float scale) {
  double dot = 0.0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j)
    dot += static_cast<double>(pr[j]) * dr[j];
  const float dotF = static_cast<float>(dot);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j)
    dr[j] = scale * pr[j] * (dr[j] - dotF);
}

struct HeadView {
  int64_t qStride, kvStride; // row strides of q/out and k/v
  int64_t group;             // query heads per kv head
  int64_t seq, heads, kvHeads, headDim;
  int64_t qOffset(int64_t b, int64_t h) const {
    return b * seq * qStride + h * headDim;
  }
  int64_t kvOffset(int64_t b, int64_t h) const {
    return b * seq * kvStride + (h / group) * headDim;
  }
};

/// P = softmax(scale * Q K^T) for one (batch, head).
Status computeProbs(const HeadView &hv, const float *q, const float *k,
                    int64_t b, int64_t h, float scale, bool causal, float *p) {
  const int64_t s = hv.seq;
  LLMIR_RETURN_IF_ERROR(gemm(false, true, s, s, hv.headDim, scale,
                             q + hv.qOffset(b, h), hv.qStride,
                             k + hv.kvOffset(b, h), hv.kvStride, 0.0f, p, s));
  softmaxRows(p, s, causal);
  return Status::ok();
}

} // namespace

Status attentionForward(const float *q, const float *k, const float *v,
                        float *out, int64_t batch, int64_t seq, int64_t heads,
                        int64_t kvHeads, int64_t headDim, float scale,
                        bool causal, float *probs) {
  const char *kn = "attention_forward";
  LLMIR_RETURN_IF_ERROR(
      checkAttention(kn, batch, seq, heads, kvHeads, headDim, scale));
  const bool any = batch > 0 && seq > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "q", q, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "k", k, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "v", v, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "out", out, any));
  if (!any)
    return Status::ok();
  const HeadView hv{heads * headDim, kvHeads * headDim, heads / kvHeads,
                    seq, heads, kvHeads, headDim};
  // Tasks are (batch, head, block of query rows). With a causal mask, block r
  // only needs keys [0, end of r): the scores and P V GEMMs shrink to that
  // width, which skips ~40% of the work at seq 256. Tasks run on the OpenMP
  // threads, each GEMM on its own thread (one small GEMM per thread beats
  // splitting it across the OpenBLAS pool), largest blocks first.
  const int64_t numBlocks = (seq + kRowBlock - 1) / kRowBlock;
  const int64_t numTasks = batch * heads * numBlocks;
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const bool parallel = threads > 1 && numTasks > 1;
  std::vector<float> scratch(
      probs ? 0 : static_cast<size_t>((parallel ? threads : 1) * kRowBlock * seq));
  detail::SerialBlasScope serialBlas(parallel);
  Status failure = Status::ok();
  bool failed = false;
#pragma omp parallel for schedule(dynamic) if (parallel)
  for (int64_t t = 0; t < numTasks; ++t) {
    const int64_t blk = numBlocks - 1 - t % numBlocks;
    const int64_t bh = t / numBlocks;
    const int64_t b = bh / heads, h = bh % heads;
    const int64_t r0 = blk * kRowBlock;
    const int64_t rows = std::min(kRowBlock, seq - r0);
    const int64_t width = causal ? r0 + rows : seq;
    int thread = 0;
#ifdef _OPENMP
    thread = omp_get_thread_num();
#endif
    float *p = probs ? probs + (b * heads + h) * seq * seq + r0 * seq
                     : scratch.data() + thread * kRowBlock * seq;
    Status st = gemm(false, true, rows, width, headDim, scale,
                     q + hv.qOffset(b, h) + r0 * hv.qStride, hv.qStride,
                     k + hv.kvOffset(b, h), hv.kvStride, 0.0f, p, seq);
    if (st.isOk()) {
      for (int64_t i = 0; i < rows; ++i) {
        float *row = p + i * seq;
        maskedSoftmaxRow(row, causal ? r0 + i + 1 : seq, width);
        if (probs) // the saved probabilities are full [seq, seq] rows
          std::fill(row + width, row + seq, 0.0f);
      }
      st = gemm(false, false, rows, headDim, width, 1.0f, p, seq,
                v + hv.kvOffset(b, h), hv.kvStride, 0.0f,
                out + hv.qOffset(b, h) + r0 * hv.qStride, hv.qStride);
    }
    if (!st.isOk()) {
#pragma omp critical(llmir_attention_failure)
      if (!failed) {
        failed = true;
        failure = std::move(st);
      }
    }
  }
  return failure;
}

Status attentionBackward(const float *q, const float *k, const float *v,
                         const float *probs, const float *dout, float *dq,
                         float *dk, float *dv, int64_t batch, int64_t seq,
                         int64_t heads, int64_t kvHeads, int64_t headDim,
                         float scale, bool causal) {
  const char *kn = "attention_backward";
  LLMIR_RETURN_IF_ERROR(
      checkAttention(kn, batch, seq, heads, kvHeads, headDim, scale));
  const bool any = batch > 0 && seq > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "q", q, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "k", k, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "v", v, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "dout", dout, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "dq", dq, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "dk", dk, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(kn, "dv", dv, any));
  if (!any)
    return Status::ok();
  const HeadView hv{heads * headDim, kvHeads * headDim, heads / kvHeads,
                    seq, heads, kvHeads, headDim};
  const size_t kvElems = static_cast<size_t>(batch * seq * kvHeads * headDim);
  std::memset(dk, 0, kvElems * sizeof(float));
  std::memset(dv, 0, kvElems * sizeof(float));
  std::vector<float> recomputed(probs ? 0 : static_cast<size_t>(seq * seq));
  std::vector<float> ds(static_cast<size_t>(seq * seq));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const float *p;
      if (probs) {
        p = probs + (b * heads + h) * seq * seq;
      } else {
        LLMIR_RETURN_IF_ERROR(
            computeProbs(hv, q, k, b, h, scale, causal, recomputed.data()));
        p = recomputed.data();
      }
      const float *qbh = q + hv.qOffset(b, h);
      const float *kbh = k + hv.kvOffset(b, h);
      const float *vbh = v + hv.kvOffset(b, h);
      const float *dobh = dout + hv.qOffset(b, h);
      // dP = dO V^T
      LLMIR_RETURN_IF_ERROR(gemm(false, true, seq, seq, headDim, 1.0f, dobh,
                                 hv.qStride, vbh, hv.kvStride, 0.0f, ds.data(),
                                 seq));
      // dS = scale * P * (dP - rowsum(P * dP)); masked entries have P == 0.
      float *dsp = ds.data();
#pragma omp parallel for schedule(static) if (seq * seq >= kParallelMinElements)
      for (int64_t i = 0; i < seq; ++i)
        softmaxBackwardRow(p + i * seq, dsp + i * seq, seq, scale);
      // dQ = dS K;  dK += dS^T Q;  dV += P^T dO  (sums over the kv group).
      LLMIR_RETURN_IF_ERROR(gemm(false, false, seq, headDim, seq, 1.0f, dsp, seq,
                                 kbh, hv.kvStride, 0.0f, dq + hv.qOffset(b, h),
                                 hv.qStride));
      LLMIR_RETURN_IF_ERROR(gemm(true, false, seq, headDim, seq, 1.0f, dsp, seq,
                                 qbh, hv.qStride, 1.0f, dk + hv.kvOffset(b, h),
                                 hv.kvStride));
      LLMIR_RETURN_IF_ERROR(gemm(true, false, seq, headDim, seq, 1.0f, p, seq,
                                 dobh, hv.qStride, 1.0f, dv + hv.kvOffset(b, h),
                                 hv.kvStride));
    }
  }
  return Status::ok();
}

} // namespace llmir::runtime
