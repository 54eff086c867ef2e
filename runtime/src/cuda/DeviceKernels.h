// Launchers of the CUDA backend's kernels (internal to runtime/src/cuda): one per
// CPU kernel of CpuBackend.cpp, same semantics, device pointers, one stream.
// Launchers only enqueue; CudaBackend checks cudaGetLastError after each one and
// turns a failure into a Status naming the kernel.
#ifndef LLMIR_RUNTIME_SRC_CUDA_DEVICEKERNELS_H
#define LLMIR_RUNTIME_SRC_CUDA_DEVICEKERNELS_H

#ifdef LLMIR_CUDA_HOST_EMULATION
#include "HostEmulation.h"
#else
#include <cuda_runtime.h>
#endif

#include "llmir/runtime/ContextParallel.h"
#include "llmir/runtime/Instr.h"

#include <algorithm>
#include <cstdint>

namespace llmir::runtime::cuda {

// ---- Elementwise (Elementwise.cu) -------------------------------------------
enum class Unary { GeluExact, Silu };
enum class UnaryGrad { GeluTanh, GeluExact, Silu };
enum class Binary { Add, Mul };
void launchUnary(Unary op, const float *x, float *y, int64_t n, cudaStream_t s);
void launchUnaryGrad(UnaryGrad op, const float *x, const float *dy, float *dx,
                     int64_t n, cudaStream_t s);
void launchBinary(Binary op, const float *a, const float *b, float *y, int64_t n,
                  cudaStream_t s);
/// y = float(double(x) * factor) (as the CPU does it).
void launchScale(const float *x, float *y, int64_t n, double factor, cudaStream_t s);
void launchFill(float *y, int64_t n, float value, cudaStream_t s);
/// y[r, c] = x[r, c] + bias[c] (y may alias x).
void launchBiasAdd(const float *x, const float *bias, float *y, int64_t rows,
                   int64_t cols, cudaStream_t s);
/// out[c] = sum_r f(r, c) in two deterministic passes through `partial`
/// (kColSumChunks * cols floats). mode 0: f = x; mode 1: f = x * y;
/// mode 2: f = x * (y - mean[r]) * rstd[r] (layer-norm dgamma, y the input);
/// mode 3: f = x * y * rstd[r] (rms-norm dweight).
constexpr int kColSumChunks = 64;
void launchColumnSum(int mode, const float *x, const float *y, const float *mean,
                     const float *rstd, float *out, float *partial, int64_t rows,
                     int64_t cols, cudaStream_t s);
void launchCastF32ToBf16(const float *x, uint16_t *y, int64_t n, cudaStream_t s);
void launchCastBf16ToF32(const uint16_t *x, float *y, int64_t n, cudaStream_t s);
/// IEEE half (round to nearest even) <-> f32.
void launchCastF32ToF16(const float *x, uint16_t *y, int64_t n, cudaStream_t s);
void launchCastF16ToF32(const uint16_t *x, float *y, int64_t n, cudaStream_t s);
/// torch AdamW step with the host-computed scalars of adamwUpdate (Elementwise.cpp);
/// with `normSq` (device, one float) the gradient is first scaled by
/// clipCoefficient(*normSq, maxNorm), computed on the device alike.
/// `invLossScale` > 0 (f16 training, needs normSq): the gradient is first
/// multiplied by it (the clipping norm too), and nothing is updated when
/// *normSq is not finite.
struct AdamwLive;
void launchAdamw(float *param, const float *grad, float *m, float *v, int64_t n,
                 float decay, float beta1, float beta2, float oneMinusB1,
                 float oneMinusB2, float bc2Sqrt, float stepSize, float eps,
                 const float *normSq, float maxNorm, float invLossScale,
                 cudaStream_t s, const AdamwLive *live = nullptr);
/// adamw_multi: up to kAdamwMultiMax updates per launch (a kernel parameter;
/// launchAdamwMulti splits longer lists), the scalars of launchAdamw shared.
constexpr int kAdamwMultiMax = 80; // the table stays under 4 KiB of kernel parameters
struct AdamwTensors {
  float *param[kAdamwMultiMax];
  const float *grad[kAdamwMultiMax];
  float *m[kAdamwMultiMax], *v[kAdamwMultiMax];
  int64_t n[kAdamwMultiMax];
  float decay[kAdamwMultiMax]; ///< 1 - lr * weight decay (or 1) per parameter
  int count = 0;
};
struct AdamwScalars {
  float beta1, beta2, oneMinusB1, oneMinusB2, bc2Sqrt, stepSize, eps;
};
/// AdamW's per-step values read from device memory by a replayed step graph
/// (CudaGraph.cu writes them before each replay). With it the launchers'
/// decay arguments are flags (non-zero: the parameter decays by `decayed`).
struct AdamwLive {
  AdamwScalars a;
  float decayed;      ///< 1 - lr * weight decay
  float maxNorm;      ///< clipping threshold (<= 0: none)
  float invLossScale; ///< 1 / loss scale, 0 when not loss scaled
};
/// launchAdamw on every tensor of `t` in one launch; with `bad` (not loss
/// scaled) the smallest (firstIndex + k) << 40 | element of a non-finite
/// gradient is atomicMin'ed into *bad.
void launchAdamwMulti(const AdamwTensors &t, int firstIndex, const AdamwScalars &a,
                      const float *normSq, float maxNorm, float invLossScale,
                      unsigned long long *bad, cudaStream_t s,
                      const AdamwLive *live = nullptr);
/// *out = sum of squares of x[0..n) (double accumulation, deterministic).
void launchGradNormSq(const float *x, int64_t n, float *out, cudaStream_t s);
constexpr int kMaxTransposeRank = 8;
struct TransposeDims {
  int rank = 0;
  int64_t outShape[kMaxTransposeRank] = {};
  int64_t srcStrideOfOutDim[kMaxTransposeRank] = {};
};
void launchTranspose(const float *x, float *y, int64_t n, const TransposeDims &d,
                     cudaStream_t s);
/// out[i] = first + (i % cols), as int32 or int64.
void launchPositionIds(void *out, bool i64, int64_t rows, int64_t cols,
                       int64_t first, cudaStream_t s);
/// Smallest index of a NaN/Inf in x, written to *firstBad (which must hold
/// INT64_MAX beforehand); untouched when all are finite.
void launchFindNonFinite(const float *x, int64_t n, unsigned long long *firstBad,
                         cudaStream_t s);
/// Per row max-subtracted softmax.
void launchSoftmax(const float *x, float *y, int64_t rows, int64_t cols,
                   cudaStream_t s);
/// RoPE with host-computed cos/sin tables [seq, headDim/2] (see ropeTables in
/// Transformer.cpp); inverse = the backward rotation. y may alias x.
void launchRope(const float *x, float *y, const float *cosT, const float *sinT,
                int64_t batch, int64_t seq, int64_t heads, int64_t headDim,
                bool inverse, cudaStream_t s);

// ---- Embedding (Elementwise.cu) ---------------------------------------------
/// out[i] = table[ids[i] - first] when first <= id < first + rows, else 0.
/// An id outside [0, vocab) sets *badPos = min(position) (INT64_MAX before).
void launchEmbedding(const void *ids, bool i64, const float *table, float *out,
                     int64_t numIds, int64_t rows, int64_t dim, int64_t first,
                     int64_t vocab, unsigned long long *badPos, cudaStream_t s);
/// dtable (zeroed here) accumulates dout rows of ids in [first, first + rows),
/// in id order per column (deterministic, like the CPU). No bounds error: ids
/// outside the shard are skipped.
void launchEmbeddingGrad(const void *ids, bool i64, const float *dout,
                         float *dtable, int64_t numIds, int64_t rows,
                         int64_t dim, int64_t first, cudaStream_t s);

/// Sets *badPos = min(i) over ids[i] outside [0, bound).
void launchCheckIds(const void *ids, bool i64, int64_t n, int64_t bound,
                    unsigned long long *badPos, cudaStream_t s);

// ---- Norms (Norm.cu) ---------------------------------------------------------
void launchLayerNorm(const float *x, const float *gamma, const float *beta,
                     float *y, float *mean, float *rstd, int64_t rows,
                     int64_t cols, float eps, cudaStream_t s);
void launchRmsNorm(const float *x, const float *weight, float *y, float *rstd,
                   int64_t rows, int64_t cols, float eps, cudaStream_t s);
/// dx of layer norm, and mean/rstd [rows] recomputed from x.
/// Storage of add_layer_norm / add_rms_norm operands (all alike).
enum class Storage { F32, BF16, F16 };
/// sum = a + b (rounded to the storage type), y = layer norm (beta may be null)
/// or, with rms, RMS norm of sum; 128-bit accesses when every pointer is
/// 16-byte aligned and cols a multiple of 16 bytes' worth of elements.
void launchAddNorm(Storage type, bool rms, const void *a, const void *b, const void *gamma,
                   const void *beta, void *sum, void *y, int64_t rows, int64_t cols,
                   float eps, cudaStream_t s);
void launchLayerNormGradX(const float *x, const float *gamma, const float *dy,
                          float *dx, float *mean, float *rstd, int64_t rows,
                          int64_t cols, float eps, cudaStream_t s);
void launchRmsNormGradX(const float *x, const float *weight, const float *dy,
                        float *dx, float *rstd, int64_t rows, int64_t cols,
                        float eps, cudaStream_t s);

// ---- Attention (Attention.cu) ------------------------------------------------
struct AttentionDims {
  int64_t batch = 0, seq = 0, heads = 0, kvHeads = 0, headDim = 0;
  float scale = 0;
  bool causal = false;
  /// Context parallelism: k and v hold seq * cp.size rows (all-gathered over
  /// cp), the causal mask compares global (zig-zag) positions.
  CpChunks cp = {};
};
/// Largest head dimension the kernels take.
constexpr int64_t kMaxAttentionHeadDim = 256;
/// out = softmax(scale q k^T) v; lse [batch, heads, seq] optional.
void launchAttentionForward(const float *q, const float *k, const float *v,
                            float *out, float *lse, const AttentionDims &d,
                            cudaStream_t s);
/// Gradients given o and lse from launchAttentionForward; delta: scratch
/// [batch, heads, seq].
void launchAttentionBackward(const float *q, const float *k, const float *v,
                             const float *o, const float *lse,
                             const float *dout, float *delta, float *dq,
                             float *dk, float *dv, const AttentionDims &d,
                             cudaStream_t s);
/// cp-comm=ring, step `step` (d.cp: this rank; k, v: the held chunk pair of
/// d.seq rows): the partial attention merged into out and lse (step 0:
/// written); twin of ringAttentionForward.
void launchRingAttentionForward(const float *q, const float *k, const float *v, float *out,
                                float *lse, const AttentionDims &d, int64_t step,
                                cudaStream_t s);
/// Its backward from the final o and lse: dq summed into (step 0: written),
/// dk and dv of the held pair written; delta: scratch [batch, heads, seq].
void launchRingAttentionBackward(const float *q, const float *k, const float *v,
                                 const float *o, const float *lse, const float *dout,
                                 float *delta, float *dq, float *dk, float *dv,
                                 const AttentionDims &d, int64_t step, cudaStream_t s);

// ---- Loss (Loss.cu) -----------------------------------------------------------
// Logits (and dlogits, of the same type, possibly the logits buffer itself) are
// f32, bf16 or f16 (`dtype`), read in 128-bit pieces with f32 math in registers.
/// Full cross-entropy: rowLoss[r] = lse_r - logits[r, label]; then the scalar
/// loss = sum (reduction sum) or mean. Label outside [0, vocab) sets *badPos.
void launchCrossEntropy(ScalarType dtype, const void *logits, const void *labels, bool i64,
                        float *rowLoss, float *loss, int64_t rows, int64_t vocab,
                        bool sum, unsigned long long *badPos, cudaStream_t s);
/// dlogits = (softmax - onehot) * dloss' / rows, dloss' = dloss * (sum ? rows : 1),
/// dloss read from the device scalar.
void launchCrossEntropyGrad(ScalarType dtype, const void *logits, const void *labels,
                            bool i64, const float *dloss, void *dlogits, int64_t rows,
                            int64_t vocab, bool sum, cudaStream_t s);
void launchCrossEntropyPartial(ScalarType dtype, const void *logits, const void *labels,
                               bool i64, const float *max, float *sumExp, float *target,
                               int64_t rows, int64_t cols, int64_t first,
                               int64_t valid, int64_t vocab,
                               unsigned long long *badPos, cudaStream_t s);
void launchCrossEntropyPartialGrad(ScalarType dtype, const void *logits, const void *labels,
                                   bool i64, const float *m, const float *ds,
                                   const float *dt, void *dl, int64_t rows,
                                   int64_t cols, int64_t first, int64_t valid,
                                   cudaStream_t s);
/// m[r] = max of row r of x [rows, cols] (reduce_max).
void launchRowMax(ScalarType dtype, const void *x, float *m, int64_t rows, int64_t cols,
                  cudaStream_t s);
void launchCrossEntropyFinalize(const float *m, const float *sumExp,
                                const float *target, float *loss, int64_t rows,
                                bool sum, cudaStream_t s);
void launchCrossEntropyFinalizeGrad(const float *sumExp, const float *dloss,
                                    float *ds, float *dt, int64_t rows, bool sum,
                                    cudaStream_t s);

// ---- Inference (Inference.cu) ------------------------------------------------
/// cache[b, h, start[b] + s, :] = x[b, s, h, :] (start: i32/i64 [batch] or null).
void launchKvCacheWrite(const float *x, const void *start, bool i64, float *cache,
                        int64_t batch, int64_t seq, int64_t kvHeads, int64_t maxSeq,
                        int64_t headDim, cudaStream_t s);
/// Query s of sequence b attends positions 0 .. start[b] + s of the caches;
/// scores: scratch of batch * heads * seq * maxSeq floats.
void launchCacheAttention(const float *q, const float *kCache, const float *vCache,
                          const void *start, bool i64, float *out, float *scores,
                          int64_t batch, int64_t seq, int64_t heads, int64_t kvHeads,
                          int64_t maxSeq, int64_t headDim, float scale, cudaStream_t s);

// ---- Split-K decode attention (DecodeAttention.cu) -----------------------------
/// Cache positions per block of the split-K cache attention.
constexpr int64_t kSplitChunk = 256;
/// Whether an f32 cache_attention runs split-K: a short query block (decode)
/// whose batch * heads queries leave most of the GPU idle over a long cache.
/// (bf16/f16 caches always run split-K: it reads them without an f32 copy.)
inline bool useSplitCacheAttention(int64_t batch, int64_t seq, int64_t heads, int64_t maxSeq) {
  return seq <= 4 && batch * heads * seq <= 256 && maxSeq >= 2 * kSplitChunk;
}
/// Chunks (blocks per query) of the split-K cache attention over `maxSeq`.
inline int64_t splitCacheChunks(int64_t maxSeq) {
  return std::max<int64_t>(1, (maxSeq + kSplitChunk - 1) / kSplitChunk);
}
/// Floats of the split-K partials (scratch) for batch * heads * seq queries.
inline int64_t splitCachePartialFloats(int64_t batch, int64_t seq, int64_t heads,
                                       int64_t maxSeq, int64_t headDim) {
  return batch * heads * seq * splitCacheChunks(maxSeq) * (headDim + 2);
}
/// The element type of q, the caches and out (all alike) of the split-K kernel.
enum class CacheType { F32, Bf16, F16 };
/// launchCacheAttention as split-K; `partial` holds splitCachePartialFloats.
void launchCacheAttentionSplit(CacheType type, const void *q, const void *kCache,
                                 const void *vCache, const void *start, bool i64, void *out,
                                 float *partial, int64_t batch, int64_t seq, int64_t heads,
                                 int64_t kvHeads, int64_t maxSeq, int64_t headDim, float scale,
                                 cudaStream_t s);

} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_DEVICEKERNELS_H
