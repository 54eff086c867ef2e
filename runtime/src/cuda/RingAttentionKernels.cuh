// Context parallelism's ring attention steps (cp-comm=ring) on the device: the mask
// policy that runs AttentionKernels.cuh's kernels as twins of ringAttentionForward /
// ringAttentionBackward (src/cpu/Attention.cpp). At step s a rank holds the K/V chunk
// pair of rank (rank - s) mod cp; a query row sees a held key row by CpChunks::sees.
// The key rows a block of query rows sees are a prefix of the pair and the query rows
// that see a block of key rows a suffix, so the tile loops skip the pairs no row sees.
#ifndef LLMIR_RUNTIME_SRC_CUDA_RINGATTENTIONKERNELS_CUH
#define LLMIR_RUNTIME_SRC_CUDA_RINGATTENTIONKERNELS_CUH

#include "AttentionKernels.cuh"

namespace llmir::runtime::cuda {
namespace {

struct RingStep {
  CpChunks cp; ///< this rank; cp.chunk rows per chunk (local rows: 2 chunks)
  int64_t step;
  bool causal;
  __device__ int chunkOf(int64_t row) const { return row >= cp.chunk ? 1 : 0; }
  /// Local query row i sees held key row j.
  __device__ bool sees(int64_t i, int64_t j) const {
    const CpChunks::Sees s = cp.sees(step, chunkOf(i), chunkOf(j), causal);
    return s == CpChunks::Sees::Whole ||
           (s == CpChunks::Sees::Diagonal && j % cp.chunk <= i % cp.chunk);
  }
  /// End of the held key rows that query rows [r0, r1) see.
  __device__ int64_t keyEnd(int64_t r0, int64_t r1) const {
    int64_t end = 0;
    for (int qc = chunkOf(r0); qc <= chunkOf(r1 - 1); ++qc)
      for (int kc = 0; kc < 2; ++kc)
        if (cp.sees(step, qc, kc, causal) != CpChunks::Sees::None)
          end = max(end, (kc + 1) * cp.chunk);
    return end;
  }
  /// Start of the query rows that see any of held key rows [j0, j1).
  __device__ int64_t queryStart(int64_t j0, int64_t j1) const {
    int64_t start = 2 * cp.chunk;
    for (int kc = chunkOf(j0); kc <= chunkOf(j1 - 1); ++kc)
      for (int qc = 0; qc < 2; ++qc)
        if (cp.sees(step, qc, kc, causal) != CpChunks::Sees::None)
          start = min(start, qc * cp.chunk);
    return start;
  }
  /// Merges the row's partial attention (acc / l, log-sum-exp m + log l) into
  /// out and *lse by log-sum-exp; step 0 writes them.
  template <int MAXD>
  __device__ void storeRow(float *out, float *lse, const float (&acc)[MAXD], float m, float l,
                           int D) const {
    const float part = l > 0.0f ? m + logf(l) : -INFINITY;
    const float old = step == 0 ? -INFINITY : *lse;
    const float hi = fmaxf(old, part), lo = fminf(old, part);
    const float merged = hi == -INFINITY ? hi : hi + log1pf(expf(lo - hi));
    const float a = step == 0 || hi == -INFINITY ? 0.0f : expf(old - merged);
    const float w = l > 0.0f ? expf(part - merged) / l : 0.0f;
#pragma unroll
    for (int d = 0; d < MAXD; ++d)
      if (d < D)
        out[d] = (a == 0.0f ? 0.0f : a * out[d]) + w * acc[d];
    *lse = merged;
  }
  /// Adds the row's dq part (step 0: writes it).
  template <int MAXD>
  __device__ void storeDq(float *dq, const float (&acc)[MAXD], int D) const {
#pragma unroll
    for (int d = 0; d < MAXD; ++d)
      if (d < D)
        dq[d] = (step == 0 ? 0.0f : dq[d]) + acc[d];
  }
};

} // namespace
} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_RINGATTENTIONKERNELS_CUH
