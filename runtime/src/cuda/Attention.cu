// CUDA causal/full attention with grouped-query heads: a tiled flash-attention-style
// forward (online softmax over shared-memory K/V tiles, one thread per query row,
// no S x S matrix) and a backward in three passes (delta = rowsum(dO * O), dq per
// query row, dk/dv per key row summing the group's query heads: no atomics,
// deterministic). Twin of attentionForward/attentionBackward in src/cpu/Attention.cpp.
//
// cp-comm=ring runs the same kernels with a ring step's mask (RingAttentionKernels.cuh).
//
// Performance note: this is a CUDA-core (fp32 FMA) kernel, not a tensor-core one;
// head dims above 64 spill the per-thread accumulators to local memory.
#include "RingAttentionKernels.cuh"

#include <type_traits>

namespace llmir::runtime::cuda {
using namespace detail;

namespace {

/// Calls fn(MAXD, forward tile, backward tile) as integral constants for the
/// kernel instance that fits `headDim`.
template <typename Fn> void byHeadDim(int64_t headDim, Fn fn) {
  using std::integral_constant;
  if (headDim <= 32)
    fn(integral_constant<int, 32>{}, integral_constant<int, 32>{}, integral_constant<int, 32>{});
  else if (headDim <= 64)
    fn(integral_constant<int, 64>{}, integral_constant<int, 32>{}, integral_constant<int, 32>{});
  else if (headDim <= 128)
    fn(integral_constant<int, 128>{}, integral_constant<int, 32>{},
       integral_constant<int, 16>{});
  else
    fn(integral_constant<int, 256>{}, integral_constant<int, 16>{}, integral_constant<int, 8>{});
}

template <typename Mask>
void forward(const float *q, const float *k, const float *v, float *out, float *lse,
             const AttentionDims &d, const Layout &L, Mask M, cudaStream_t s) {
  if (d.batch <= 0 || d.seq <= 0 || d.heads <= 0)
    return;
  dim3 grid(static_cast<unsigned>((d.seq + kRowsPerBlock - 1) / kRowsPerBlock),
            static_cast<unsigned>(d.heads), static_cast<unsigned>(d.batch));
  byHeadDim(d.headDim, [&](auto maxd, auto tile, auto) {
    attentionForwardKernel<decltype(maxd)::value, decltype(tile)::value, Mask><<<grid, kRowsPerBlock, 0, s>>>(
        q, k, v, out, lse, L, M, d.scale);
  });
}

template <typename Mask>
void backward(const float *q, const float *k, const float *v, const float *o,
              const float *lse, const float *dout, float *delta, float *dq, float *dk,
              float *dv, const AttentionDims &d, const Layout &L, Mask M, cudaStream_t s) {
  if (d.batch <= 0 || d.seq <= 0 || d.heads <= 0)
    return;
  const int64_t n = d.batch * d.seq * d.heads;
  attentionDeltaKernel<<<gridFor(n), kThreads, 0, s>>>(o, dout, delta, L, d.batch);
  const unsigned blocks = static_cast<unsigned>((d.seq + kRowsPerBlock - 1) / kRowsPerBlock);
  dim3 gridQ(blocks, static_cast<unsigned>(d.heads), static_cast<unsigned>(d.batch));
  const unsigned keyBlocks = static_cast<unsigned>((L.kvSeq + kRowsPerBlock - 1) / kRowsPerBlock);
  dim3 gridK(keyBlocks, static_cast<unsigned>(d.kvHeads), static_cast<unsigned>(d.batch));
  byHeadDim(d.headDim, [&](auto maxd, auto, auto tile) {
    attentionDqKernel<decltype(maxd)::value, decltype(tile)::value, Mask><<<gridQ, kRowsPerBlock, 0, s>>>(
        q, k, v, lse, delta, dout, dq, L, M, d.scale);
    attentionDkDvKernel<decltype(maxd)::value, decltype(tile)::value, Mask><<<gridK, kRowsPerBlock, 0, s>>>(
        q, k, v, lse, delta, dout, dk, dv, L, M, d.scale);
  });
}

/// The sequence layout: k and v hold seq * cp.size rows (all-gathered over cp).
Layout layoutOf(const AttentionDims &d) {
  return Layout{d.seq, d.heads, d.kvHeads, d.headDim, d.seq * d.cp.size, d.cp};
}

/// A ring step's layout: k and v hold the seq rows of one chunk pair.
Layout ringLayoutOf(const AttentionDims &d) {
  return Layout{d.seq, d.heads, d.kvHeads, d.headDim, d.seq, {}};
}

} // namespace

void launchAttentionForward(const float *q, const float *k, const float *v,
                            float *out, float *lse, const AttentionDims &d,
                            cudaStream_t s) {
  forward(q, k, v, out, lse, d, layoutOf(d), SequenceMask{layoutOf(d), d.causal}, s);
}

void launchAttentionBackward(const float *q, const float *k, const float *v,
                             const float *o, const float *lse,
                             const float *dout, float *delta, float *dq,
                             float *dk, float *dv, const AttentionDims &d,
                             cudaStream_t s) {
  backward(q, k, v, o, lse, dout, delta, dq, dk, dv, d, layoutOf(d),
           SequenceMask{layoutOf(d), d.causal}, s);
}

void launchRingAttentionForward(const float *q, const float *k, const float *v, float *out,
                                float *lse, const AttentionDims &d, int64_t step,
                                cudaStream_t s) {
  forward(q, k, v, out, lse, d, ringLayoutOf(d), RingStep{d.cp, step, d.causal}, s);
}

void launchRingAttentionBackward(const float *q, const float *k, const float *v,
                                 const float *o, const float *lse, const float *dout,
                                 float *delta, float *dq, float *dk, float *dv,
                                 const AttentionDims &d, int64_t step, cudaStream_t s) {
  backward(q, k, v, o, lse, dout, delta, dq, dk, dv, d, ringLayoutOf(d),
           RingStep{d.cp, step, d.causal}, s);
}

} // namespace llmir::runtime::cuda
