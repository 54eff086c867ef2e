// CPU kernels of text generation over a KV cache: cache writes, attention of
// new tokens over the cache, RoPE at per-sequence positions, and the pick of
// each prompt's last hidden row.
#include "llmir/runtime/Kernels.h"

#include "KernelUtil.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <string>
#include <vector>

namespace llmir::runtime {
using detail::checkPointer;
using detail::checkProduct;
using detail::checkSize;
using detail::invalid;

namespace {

using Sizes = std::initializer_list<std::pair<const char *, int64_t>>;

Status checkSizes(const char *k, Sizes sizes) {
  for (auto [name, v] : sizes)
    LLMIR_RETURN_IF_ERROR(checkSize(k, name, v));
  return Status::ok();
}

/// Position start[b] + s must lie in [0, maxSeq) for every new row s.
Status checkPositions(const char *k, const int64_t *start, int64_t batch,
                      int64_t seq, int64_t maxSeq) {
  for (int64_t b = 0; b < batch; ++b) {
    int64_t first = start ? start[b] : 0;
    if (first < 0 || first + seq > maxSeq)
      return invalid(k, "sequence " + std::to_string(b) + ": positions " +
                            std::to_string(first) + " .. " +
                            std::to_string(first + seq - 1) +
                            " do not fit a cache of " + std::to_string(maxSeq) +
                            " positions (--max-seq)");
  }
  return Status::ok();
}

} // namespace

Status kvCacheWrite(const float *x, const int64_t *start, float *cache,
                    int64_t batch, int64_t seq, int64_t kvHeads,
                    int64_t maxSeq, int64_t headDim) {
  const char *k = "kv_cache_write";
  LLMIR_RETURN_IF_ERROR(checkSizes(k, {{"batch", batch}, {"seq", seq},
                                        {"kvHeads", kvHeads}, {"maxSeq", maxSeq},
                                        {"headDim", headDim}}));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, kvHeads, maxSeq, headDim}));
  const bool any = batch > 0 && seq > 0 && kvHeads > 0 && headDim > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "cache", cache, any));
  if (!any)
    return Status::ok();
  LLMIR_RETURN_IF_ERROR(checkPositions(k, start, batch, seq, maxSeq));
  const int64_t row = kvHeads * headDim;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s) {
      int64_t pos = (start ? start[b] : 0) + s;
      for (int64_t h = 0; h < kvHeads; ++h)
        std::memcpy(cache + ((b * kvHeads + h) * maxSeq + pos) * headDim,
                    x + (b * seq + s) * row + h * headDim,
                    static_cast<size_t>(headDim) * sizeof(float));
    }
  return Status::ok();
}

Status cacheAttentionForward(const float *q, const float *kCache,
                             const float *vCache, const int64_t *start,
                             float *out, int64_t batch, int64_t seq,
                             int64_t heads, int64_t kvHeads, int64_t maxSeq,
                             int64_t headDim, float scale) {
  const char *k = "cache_attention";
  LLMIR_RETURN_IF_ERROR(
      checkSizes(k, {{"batch", batch}, {"seq", seq}, {"maxSeq", maxSeq}}));
  if (heads <= 0 || kvHeads <= 0 || headDim <= 0 || heads % kvHeads != 0)
    return invalid(k, "heads (" + std::to_string(heads) +
                          ") must be a positive multiple of kvHeads (" +
                          std::to_string(kvHeads) + ") and headDim > 0");
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, kvHeads, maxSeq, headDim}));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, seq, heads, headDim}));
  const bool any = batch > 0 && seq > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "q", q, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "kCache", kCache, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "vCache", vCache, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "start", start, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "out", out, any));
  if (!any)
    return Status::ok();
  LLMIR_RETURN_IF_ERROR(checkPositions(k, start, batch, seq, maxSeq));
  const int64_t group = heads / kvHeads, qRow = heads * headDim;
  const int64_t tasks = batch * heads * seq;
#pragma omp parallel for schedule(static) if (tasks * maxSeq * headDim >= detail::kParallelMinElements)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t s = t % seq, h = (t / seq) % heads, b = t / (seq * heads);
    const int64_t n = start[b] + s + 1; // visible cache positions
    const float *qv = q + (b * seq + s) * qRow + h * headDim;
    const int64_t kvBase = (b * kvHeads + h / group) * maxSeq * headDim;
    const float *kc = kCache + kvBase, *vc = vCache + kvBase;
    std::vector<float> p(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < headDim; ++d)
        dot += qv[d] * kc[j * headDim + d];
      p[j] = scale * dot;
    }
    detail::softmaxRow(p.data(), p.data(), n);
    float *o = out + (b * seq + s) * qRow + h * headDim;
    std::fill(o, o + headDim, 0.0f);
    for (int64_t j = 0; j < n; ++j) {
      const float w = p[j];
      const float *vr = vc + j * headDim;
#pragma omp simd
      for (int64_t d = 0; d < headDim; ++d)
        o[d] += w * vr[d];
    }
  }
  return Status::ok();
}

Status ropeAtForward(const float *x, float *y, const int64_t *start,
                     int64_t batch, int64_t seq, int64_t heads,
                     int64_t headDim, double theta) {
  const char *k = "rope_at";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "batch", batch));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, seq, heads, headDim}));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "start", start, batch > 0));
  // One sequence at a time: the same rotation (and tables) as ropeForward
  // with the sequence's offset.
  const int64_t stride = seq * heads * headDim;
  for (int64_t b = 0; b < batch; ++b) {
    if (start[b] < 0)
      return invalid(k, "sequence " + std::to_string(b) +
                            " has a negative position " +
                            std::to_string(start[b]));
    LLMIR_RETURN_IF_ERROR(ropeForward(x + b * stride, y + b * stride, 1, seq,
                                      heads, headDim, theta, start[b]));
  }
  return Status::ok();
}

Status lastTokenForward(const float *x, const int64_t *lengths, float *out,
                        int64_t batch, int64_t seq, int64_t dim) {
  const char *k = "last_token";
  LLMIR_RETURN_IF_ERROR(
      checkSizes(k, {{"batch", batch}, {"seq", seq}, {"dim", dim}}));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, seq, dim}));
  const bool any = batch > 0 && dim > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "lengths", lengths, batch > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "out", out, any));
  for (int64_t b = 0; b < batch; ++b) {
    if (lengths[b] < 1 || lengths[b] > seq)
      return invalid(k, "sequence " + std::to_string(b) + " has length " +
                            std::to_string(lengths[b]) + ", expected 1 .. " +
                            std::to_string(seq) + " (the prompt width)");
    if (any)
      std::memcpy(out + b * dim, x + (b * seq + lengths[b] - 1) * dim,
                  static_cast<size_t>(dim) * sizeof(float));
  }
  return Status::ok();
}

} // namespace llmir::runtime
