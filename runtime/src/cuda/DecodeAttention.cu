// Launchers of the split-K (flash-decoding) cache attention
// (DecodeAttentionKernels.cuh): partial blocks, then the combine.
#include "DecodeAttentionKernels.cuh"

namespace llmir::runtime::cuda {
namespace {

template <typename S>
void launchSplit(const void *q, const void *kCache, const void *vCache, const void *start,
                 bool i64, void *out, float *partial, int64_t batch, int64_t seq,
                 int64_t heads, int64_t kvHeads, int64_t maxSeq, int64_t headDim, float scale,
                 cudaStream_t s) {
  using T = typename S::T;
  const int64_t tasks = batch * heads * seq, chunks = splitCacheChunks(maxSeq);
  if (tasks <= 0)
    return;
  // 128 threads: two positions of a kSplitChunk chunk per thread.
  const dim3 grid(static_cast<unsigned>(tasks), static_cast<unsigned>(chunks));
  cacheAttentionSplitKernel<S><<<grid, 128, 0, s>>>(
      static_cast<const T *>(q), static_cast<const T *>(kCache), static_cast<const T *>(vCache),
      start, i64, partial, seq, heads, kvHeads, maxSeq, headDim, scale);
  cacheAttentionCombineKernel<S><<<static_cast<unsigned>(tasks), 128, 0, s>>>(
      partial, static_cast<T *>(out), chunks, seq, heads, headDim);
}

} // namespace

void launchCacheAttentionSplit(CacheType type, const void *q, const void *kCache,
                               const void *vCache, const void *start, bool i64, void *out,
                               float *partial, int64_t batch, int64_t seq, int64_t heads,
                               int64_t kvHeads, int64_t maxSeq, int64_t headDim, float scale,
                               cudaStream_t s) {
  switch (type) {
  case CacheType::F32:
    return launchSplit<F32Storage>(q, kCache, vCache, start, i64, out, partial, batch, seq,
                                   heads, kvHeads, maxSeq, headDim, scale, s);
  case CacheType::Bf16:
    return launchSplit<Bf16Storage>(q, kCache, vCache, start, i64, out, partial, batch, seq,
                                    heads, kvHeads, maxSeq, headDim, scale, s);
  case CacheType::F16:
    return launchSplit<F16Storage>(q, kCache, vCache, start, i64, out, partial, batch, seq,
                                   heads, kvHeads, maxSeq, headDim, scale, s);
  }
}

} // namespace llmir::runtime::cuda
