// CUDA twins of the inference (KV cache) kernels in src/cpu/Inference.cpp: cache
// write and attention over cached positions. Positions are read on the device; the
// backend validates them on the host first (as the CPU does).
#include "InferenceKernels.cuh"

namespace llmir::runtime::cuda {
using namespace detail;

void launchKvCacheWrite(const float *x, const void *start, bool i64, float *cache,
                        int64_t batch, int64_t seq, int64_t kvHeads, int64_t maxSeq,
                        int64_t headDim, cudaStream_t s) {
  const int64_t n = batch * seq * kvHeads * headDim;
  if (n > 0)
    kvCacheWriteKernel<<<gridFor(n), kThreads, 0, s>>>(x, start, i64, cache, n, seq,
                                                       kvHeads, maxSeq, headDim);
}

void launchCacheAttention(const float *q, const float *kCache, const float *vCache,
                          const void *start, bool i64, float *out, float *scores,
                          int64_t batch, int64_t seq, int64_t heads, int64_t kvHeads,
                          int64_t maxSeq, int64_t headDim, float scale, cudaStream_t s) {
  const int64_t tasks = batch * heads * seq;
  if (tasks > 0)
    cacheAttentionKernel<<<static_cast<unsigned>(tasks), kThreads, 0, s>>>(
        q, kCache, vCache, start, i64, out, scores, seq, heads, kvHeads, maxSeq, headDim,
        scale);
}

} // namespace llmir::runtime::cuda
