// Split-K (flash-decoding) attention over the KV cache, device code only
// (DecodeAttention.cu has the launchers; the host emulation test runs these on
// the CPU). A decode step has one query per (batch, head): too few blocks for
// one block per query to fill the GPU when the cache is long. Here the visible
// positions are cut into chunks of kSplitChunk, one block each writes a partial
// (max m, sum l, unnormalised acc[headDim]), and a combine kernel rescales the
// partials by exp(m_c - M). The caches, q and out are f32, bf16 or f16 (the
// Storage types of the fused norms): no f32 copy of a bf16 cache is made.
#ifndef LLMIR_RUNTIME_SRC_CUDA_DECODEATTENTIONKERNELS_CUH
#define LLMIR_RUNTIME_SRC_CUDA_DECODEATTENTIONKERNELS_CUH

#include "DeviceKernels.h"
#include "DeviceUtil.cuh"
#include "NormKernels.cuh" // F32Storage, Bf16Storage, F16Storage

namespace llmir::runtime::cuda {
namespace {
using namespace detail;

/// Floats of one partial: m, l, then acc[headDim].
__device__ __forceinline__ int64_t splitPartialFloats(int64_t headDim) { return headDim + 2; }

// Grid (tasks, chunks); task t = (b, h, s) as in cacheAttentionKernel. Block c
// covers positions [c * kSplitChunk, min(n, (c + 1) * kSplitChunk)) of the
// n = start[b] + s + 1 visible ones; a block past n writes an empty partial
// (m = -inf, l = 0), which the combine skips.
template <typename S>
__global__ void cacheAttentionSplitKernel(const typename S::T *q, const typename S::T *kCache,
                                          const typename S::T *vCache, const void *start,
                                          bool i64, float *partial, int64_t seq, int64_t heads,
                                          int64_t kvHeads, int64_t maxSeq, int64_t headDim,
                                          float scale) {
  __shared__ float p[kSplitChunk];
  __shared__ float qs[kMaxAttentionHeadDim];
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const int64_t t = blockIdx.x, chunk = blockIdx.y, chunks = gridDim.y;
  const int64_t s = t % seq, h = (t / seq) % heads, b = t / (seq * heads);
  const int64_t group = heads / kvHeads, qRow = heads * headDim;
  const int64_t n = loadId(start, i64, b) + s + 1;
  const int64_t lo = chunk * kSplitChunk, hi = min(n, lo + kSplitChunk);
  float *part = partial + (t * chunks + chunk) * splitPartialFloats(headDim);
  if (lo >= hi) { // the same for the whole block: no barrier is skipped by some threads only
    for (int64_t d = threadIdx.x; d < headDim; d += blockDim.x)
      part[2 + d] = 0.0f;
    if (threadIdx.x == 0) {
      part[0] = -INFINITY;
      part[1] = 0.0f;
    }
    return;
  }
  const typename S::T *qv = q + (b * seq + s) * qRow + h * headDim;
  for (int64_t d = threadIdx.x; d < headDim; d += blockDim.x)
    qs[d] = S::load(qv[d]);
  __syncthreads();
  const int64_t kvBase = (b * kvHeads + h / group) * maxSeq * headDim;
  const typename S::T *kc = kCache + kvBase, *vc = vCache + kvBase;
  float mx = -INFINITY;
  for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
    float dot = 0.0f;
    for (int64_t d = 0; d < headDim; ++d)
      dot += qs[d] * S::load(kc[j * headDim + d]);
    p[j - lo] = scale * dot;
    mx = fmaxf(mx, p[j - lo]);
  }
  mx = blockMax(mx, fscratch);
  double sum = 0.0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
    const float e = expf(p[j - lo] - mx);
    p[j - lo] = e;
    sum += e;
  }
  sum = blockSum(sum, dscratch); // its barriers also publish p[]
  for (int64_t d = threadIdx.x; d < headDim; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = lo; j < hi; ++j)
      acc += p[j - lo] * S::load(vc[j * headDim + d]);
    part[2 + d] = acc;
  }
  if (threadIdx.x == 0) {
    part[0] = mx;
    part[1] = static_cast<float>(sum);
  }
}

// One block per task: out[d] = sum_c acc_c[d] e^(m_c - M) / sum_c l_c e^(m_c - M)
// with M the largest m_c (chunk 0 always holds position 0, so M is finite for
// finite scores).
template <typename S>
__global__ void cacheAttentionCombineKernel(const float *partial, typename S::T *out,
                                            int64_t chunks, int64_t seq, int64_t heads,
                                            int64_t headDim) {
  const int64_t t = blockIdx.x, stride = splitPartialFloats(headDim);
  const int64_t s = t % seq, h = (t / seq) % heads, b = t / (seq * heads);
  typename S::T *o = out + ((b * seq + s) * heads + h) * headDim;
  const float *part = partial + t * chunks * stride;
  float m = -INFINITY;
  for (int64_t c = 0; c < chunks; ++c)
    m = fmaxf(m, part[c * stride]);
  double l = 0.0;
  for (int64_t c = 0; c < chunks; ++c)
    if (part[c * stride + 1] > 0.0f)
      l += static_cast<double>(part[c * stride + 1]) * expf(part[c * stride] - m);
  const float inv = static_cast<float>(1.0 / l);
  for (int64_t d = threadIdx.x; d < headDim; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t c = 0; c < chunks; ++c)
      if (part[c * stride + 1] > 0.0f)
        acc += part[c * stride + 2 + d] * expf(part[c * stride] - m);
    o[d] = S::store(acc * inv);
  }
}

} // namespace
} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_DECODEATTENTIONKERNELS_CUH
