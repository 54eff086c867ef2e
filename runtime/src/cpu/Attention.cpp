// CPU attention (grouped-query, optional causal mask): per (batch, head) two GEMMs around a row softmax.
#include "llmir/runtime/Kernels.h"

#include "KernelUtil.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace llmir::runtime {
using detail::checkPointer;
using detail::checkProduct;
using detail::checkSize;
using detail::invalid;
using detail::kParallelMinElements;

namespace {

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

/// Row-wise masked softmax of the [seq, seq] score block, in place.
void softmaxRows(float *p, int64_t seq, bool causal) {
#pragma omp parallel for schedule(static) if (seq * seq >= kParallelMinElements)
  for (int64_t i = 0; i < seq; ++i) {
    float *row = p + i * seq;
    const int64_t valid = causal ? i + 1 : seq;
    float maxVal = row[0];
    for (int64_t j = 1; j < valid; ++j)
      maxVal = std::max(maxVal, row[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < valid; ++j) {
      row[j] = std::exp(row[j] - maxVal);
      sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < valid; ++j)
      row[j] *= inv;
    for (int64_t j = valid; j < seq; ++j)
      row[j] = 0.0f;
  }
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
  std::vector<float> scratch(probs ? 0 : static_cast<size_t>(seq * seq));
  // GEMMs are issued from this (serial) loop so OpenBLAS threads never nest
  // inside OpenMP; only the softmax between them uses OpenMP.
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      float *p = probs ? probs + (b * heads + h) * seq * seq : scratch.data();
      LLMIR_RETURN_IF_ERROR(computeProbs(hv, q, k, b, h, scale, causal, p));
      LLMIR_RETURN_IF_ERROR(gemm(false, false, seq, headDim, seq, 1.0f, p, seq,
                                 v + hv.kvOffset(b, h), hv.kvStride, 0.0f,
                                 out + hv.qOffset(b, h), hv.qStride));
    }
  }
  return Status::ok();
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
      for (int64_t i = 0; i < seq; ++i) {
        const float *pr = p + i * seq;
        float *dr = dsp + i * seq;
        double dot = 0.0;
        for (int64_t j = 0; j < seq; ++j)
          dot += static_cast<double>(pr[j]) * dr[j];
        const float dotF = static_cast<float>(dot);
        for (int64_t j = 0; j < seq; ++j)
          dr[j] = scale * pr[j] * (dr[j] - dotF);
      }
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
