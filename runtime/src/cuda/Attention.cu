// CUDA causal/full attention with grouped-query heads: a tiled flash-attention-style
// forward (online softmax over shared-memory K/V tiles, one thread per query row,
// no S x S matrix) and a backward in three passes (delta = rowsum(dO * O), dq per
// query row, dk/dv per key row summing the group's query heads: no atomics,
// deterministic). Twin of attentionForward/attentionBackward in src/cpu/Attention.cpp.
//
// Performance note: this is a CUDA-core (fp32 FMA) kernel, not a tensor-core one;
// head dims above 64 spill the per-thread accumulators to local memory.
#include "AttentionKernels.cuh"

namespace llmir::runtime::cuda {
using namespace detail;

namespace {

Layout layoutOf(const AttentionDims &d) {
  return Layout{d.seq, d.heads, d.kvHeads, d.headDim, d.seq * d.cp.size, d.cp};
}

template <int MAXD, int TILE>
void forwardImpl(const float *q, const float *k, const float *v, float *out,
                 float *lse, const AttentionDims &d, cudaStream_t s) {
  dim3 grid(static_cast<unsigned>((d.seq + kRowsPerBlock - 1) / kRowsPerBlock),
            static_cast<unsigned>(d.heads), static_cast<unsigned>(d.batch));
  attentionForwardKernel<MAXD, TILE><<<grid, kRowsPerBlock, 0, s>>>(
      q, k, v, out, lse, layoutOf(d), d.scale, d.causal);
}

template <int MAXD, int TILE>
void backwardImpl(const float *q, const float *k, const float *v, const float *lse,
                  const float *delta, const float *dout, float *dq, float *dk,
                  float *dv, const AttentionDims &d, cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((d.seq + kRowsPerBlock - 1) / kRowsPerBlock);
  dim3 gridQ(blocks, static_cast<unsigned>(d.heads), static_cast<unsigned>(d.batch));
  attentionDqKernel<MAXD, TILE><<<gridQ, kRowsPerBlock, 0, s>>>(
      q, k, v, lse, delta, dout, dq, layoutOf(d), d.scale, d.causal);
  const unsigned keyBlocks =
      static_cast<unsigned>((d.seq * d.cp.size + kRowsPerBlock - 1) / kRowsPerBlock);
  dim3 gridK(keyBlocks, static_cast<unsigned>(d.kvHeads), static_cast<unsigned>(d.batch));
  attentionDkDvKernel<MAXD, TILE><<<gridK, kRowsPerBlock, 0, s>>>(
      q, k, v, lse, delta, dout, dk, dv, layoutOf(d), d.scale, d.causal);
}

} // namespace

void launchAttentionForward(const float *q, const float *k, const float *v,
                            float *out, float *lse, const AttentionDims &d,
                            cudaStream_t s) {
  if (d.batch <= 0 || d.seq <= 0 || d.heads <= 0)
    return;
  if (d.headDim <= 32)
    forwardImpl<32, 32>(q, k, v, out, lse, d, s);
  else if (d.headDim <= 64)
    forwardImpl<64, 32>(q, k, v, out, lse, d, s);
  else if (d.headDim <= 128)
    forwardImpl<128, 32>(q, k, v, out, lse, d, s);
  else
    forwardImpl<256, 16>(q, k, v, out, lse, d, s);
}

void launchAttentionBackward(const float *q, const float *k, const float *v,
                             const float *o, const float *lse,
                             const float *dout, float *delta, float *dq,
                             float *dk, float *dv, const AttentionDims &d,
                             cudaStream_t s) {
  if (d.batch <= 0 || d.seq <= 0 || d.heads <= 0)
    return;
  const int64_t n = d.batch * d.seq * d.heads;
  attentionDeltaKernel<<<gridFor(n), kThreads, 0, s>>>(o, dout, delta, layoutOf(d),
                                                       d.batch);
  if (d.headDim <= 32)
    backwardImpl<32, 32>(q, k, v, lse, delta, dout, dq, dk, dv, d, s);
  else if (d.headDim <= 64)
    backwardImpl<64, 32>(q, k, v, lse, delta, dout, dq, dk, dv, d, s);
  else if (d.headDim <= 128)
    backwardImpl<128, 16>(q, k, v, lse, delta, dout, dq, dk, dv, d, s);
  else
    backwardImpl<256, 8>(q, k, v, lse, delta, dout, dq, dk, dv, d, s);
}

} // namespace llmir::runtime::cuda
