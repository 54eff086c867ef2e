// The KV-cache kernels of the CUDA backend (device code only; Inference.cu has the
// launchers). Kept apart so that the host emulation test can run them on the CPU.
#ifndef LLMIR_RUNTIME_SRC_CUDA_INFERENCEKERNELS_CUH
#define LLMIR_RUNTIME_SRC_CUDA_INFERENCEKERNELS_CUH

#include "DeviceKernels.h"
#include "DeviceUtil.cuh"

namespace llmir::runtime::cuda {
namespace {
using namespace detail;

__global__ void kvCacheWriteKernel(const float *x, const void *start, bool i64,
                                   float *cache, int64_t n, int64_t seq,
                                   int64_t kvHeads, int64_t maxSeq, int64_t headDim) {
  for (int64_t t = globalIndex(); t < n; t += globalStride()) {
    const int64_t d = t % headDim, h = (t / headDim) % kvHeads;
    const int64_t s = (t / (headDim * kvHeads)) % seq, b = t / (headDim * kvHeads * seq);
    const int64_t pos = (start ? loadId(start, i64, b) : 0) + s;
    cache[((b * kvHeads + h) * maxSeq + pos) * headDim + d] = x[t];
  }
}

// One block per (batch, head, query): scores of the visible positions in
// `scores` (a [tasks, maxSeq] scratch), softmax as detail::softmaxRow, then
// out[d] = sum_j p_j v[j, d] in position order.
__global__ void cacheAttentionKernel(const float *q, const float *kCache,
                                     const float *vCache, const void *start, bool i64,
                                     float *out, float *scores, int64_t seq,
                                     int64_t heads, int64_t kvHeads, int64_t maxSeq,
                                     int64_t headDim, float scale) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const int64_t t = blockIdx.x;
  const int64_t s = t % seq, h = (t / seq) % heads, b = t / (seq * heads);
  const int64_t group = heads / kvHeads, qRow = heads * headDim;
  const int64_t n = loadId(start, i64, b) + s + 1;
  const float *qv = q + (b * seq + s) * qRow + h * headDim;
  const int64_t kvBase = (b * kvHeads + h / group) * maxSeq * headDim;
  const float *kc = kCache + kvBase, *vc = vCache + kvBase;
  float *p = scores + t * maxSeq;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    float dot = 0.0f;
    for (int64_t d = 0; d < headDim; ++d)
      dot += qv[d] * kc[j * headDim + d];
    p[j] = scale * dot;
    mx = fmaxf(mx, p[j]);
  }
  mx = blockMax(mx, fscratch);
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const float e = expf(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  sum = blockSum(sum, dscratch); // its barriers also publish p[]
  const float inv = static_cast<float>(1.0 / sum);
  float *o = out + (b * seq + s) * qRow + h * headDim;
  for (int64_t d = threadIdx.x; d < headDim; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < n; ++j)
      acc += (p[j] * inv) * vc[j * headDim + d];
    o[d] = acc;
  }
}

} // namespace
} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_INFERENCEKERNELS_CUH
