// CPU reference kernels (fp32, row-major): the oracle every other backend's kernels are tested against.
#ifndef LLMIR_RUNTIME_KERNELS_H
#define LLMIR_RUNTIME_KERNELS_H

#include "llmir/runtime/ContextParallel.h"
#include "llmir/runtime/Instr.h"
#include "llmir/runtime/Status.h"

#include <cstdint>

namespace llmir::runtime {

// All tensors are contiguous row-major [rows, cols] (or flat [n]). Outputs are
// overwritten, never accumulated into. Pointers may be null only where a size
// makes them unused or where a parameter says "optional". Bad sizes or missing
// pointers give InvalidArgument.

/// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (HF GPT-2 "gelu_new").
Status geluTanhForward(const float *x, float *y, int64_t n);

/// dx = dy * d gelu_tanh(x) / dx.
Status geluTanhBackward(const float *x, const float *dy, float *dx, int64_t n);

/// Per row: y = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps),
/// var the biased variance. gamma, beta: [cols]. mean, rstd: [rows], optional.
Status layerNormForward(const float *x, const float *gamma, const float *beta,
                        float *y, float *mean, float *rstd, int64_t rows,
                        int64_t cols, float eps);

/// Gradients of layerNormForward given dy and the saved mean/rstd.
/// dx: [rows, cols]; dgamma, dbeta: [cols].
Status layerNormBackward(const float *dy, const float *x, const float *gamma,
                         const float *mean, const float *rstd, float *dx,
                         float *dgamma, float *dbeta, int64_t rows,
                         int64_t cols);

/// Per row (LLaMA RMSNorm): y = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps).
/// weight: [cols]. rstd: [rows], optional.
Status rmsNormForward(const float *x, const float *weight, float *y,
                      float *rstd, int64_t rows, int64_t cols, float eps);

/// Softmax over the last dimension, max-subtracted (no overflow for large x).
Status softmaxForward(const float *x, float *y, int64_t rows, int64_t cols);

// ---- GEMM (OpenBLAS) ----------------------------------------------------------
//
// Threading: the GEMMs run on OpenBLAS's own thread pool, which honours
// OPENBLAS_NUM_THREADS (or openblas_set_num_threads). No kernel here calls a GEMM
// from inside an OpenMP region, so the two pools never nest; they do alternate
// (e.g. attention = GEMM, OpenMP softmax, GEMM). With GNU OpenMP, idle OpenMP
// threads spin for a while after a region: if they slow the BLAS threads down,
// set OMP_WAIT_POLICY=passive.

/// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major, op = transpose
/// when trans* is set (A is then stored [k,m], B [n,k]). Leading dimensions are
/// row strides of the stored matrices. beta == 0 overwrites C (NaNs in C ignored).
Status gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
            float alpha, const float *A, int64_t lda, const float *B,
            int64_t ldb, float beta, float *C, int64_t ldc);

/// `batch` independent gemm calls; matrix b starts at A + b*strideA (B, C alike).
/// strideB == 0 broadcasts one B to every batch entry (e.g. a shared weight).
Status gemmStridedBatched(bool transA, bool transB, int64_t m, int64_t n,
                          int64_t k, float alpha, const float *A, int64_t lda,
                          int64_t strideA, const float *B, int64_t ldb,
                          int64_t strideB, float beta, float *C, int64_t ldc,
                          int64_t strideC, int64_t batch);

// ---- Elementwise ----------------------------------------------------------------

/// y[r, c] += bias[c] (in place: the one kernel that updates its output).
Status addBias(float *y, const float *bias, int64_t rows, int64_t cols);

/// dbias[c] = sum_r dy[r, c] (overwrites dbias).
Status biasBackward(const float *dy, float *dbias, int64_t rows, int64_t cols);

/// y = a + b (y may alias a or b).
Status add(const float *a, const float *b, float *y, int64_t n);

/// y = a * b (y may alias a or b).
Status mul(const float *a, const float *b, float *y, int64_t n);

/// y = x * sigmoid(x) (LLaMA "silu").
Status siluForward(const float *x, float *y, int64_t n);

/// dx = dy * d silu(x) / dx.
Status siluBackward(const float *x, const float *dy, float *dx, int64_t n);

/// y = 0.5 x (1 + erf(x / sqrt(2)))  (HF "gelu").
Status geluExactForward(const float *x, float *y, int64_t n);

/// dx = dy * (Phi(x) + x phi(x)).
Status geluExactBackward(const float *x, const float *dy, float *dx, int64_t n);

/// dst[r, :] = src[r, colOffset : colOffset + dstCols]; src is [rows, srcCols].
/// Splits a fused [.., q|k|v] projection (GPT-2 c_attn) along the last dim.
Status copyColumns(const float *src, int64_t rows, int64_t srcCols,
                   int64_t colOffset, float *dst, int64_t dstCols);

/// dst[r, colOffset : colOffset + srcCols] = src[r, :]; dst is [rows, dstCols],
/// other columns untouched. The inverse of copyColumns (concat, or the backward
/// of a split).
Status scatterColumns(const float *src, int64_t rows, int64_t srcCols,
                      float *dst, int64_t dstCols, int64_t colOffset);

// ---- Embedding -------------------------------------------------------------------

/// out[i, :] = table[ids[i], :]; table is [vocab, dim]. An id outside [0, vocab)
/// gives InvalidArgument naming the id and its position; nothing is read out of
/// bounds. Ids are int64 only: convert int32/uint16/uint8 token files with
/// idsToInt64 (Npy.h's NpyArray::toInt64 does this for .npy files).
Status embeddingForward(const int64_t *ids, const float *table, float *out,
                        int64_t numIds, int64_t vocab, int64_t dim);

/// dtable[ids[i], :] += dout[i, :]. ACCUMULATES (unlike every other kernel):
/// a tied embedding also receives the LM-head gradient in the same buffer, so
/// the caller zeroes dtable once per step. Deterministic (rows in id order).
Status embeddingBackward(const int64_t *ids, const float *dout, float *dtable,
                         int64_t numIds, int64_t vocab, int64_t dim);

/// Widens int32 token ids to int64 (negative ids are kept; the embedding
/// kernel rejects them).
Status idsToInt64(const int32_t *ids, int64_t *out, int64_t n);

// ---- RoPE (HF LLaMA rotate-half) -------------------------------------------------

/// x, y: [batch, seq, heads * headDim] (y may alias x). With half = headDim/2,
/// inv_freq[i] = 1 / theta^(2i/headDim) computed in float32 like HF, and
/// angle = float32(offset + s) * inv_freq[i] (float32 product), cos/sin in
/// float32:  y[i] = x[i] cos - x[i+half] sin,  y[i+half] = x[i+half] cos + x[i] sin.
/// headDim must be even.
Status ropeForward(const float *x, float *y, int64_t batch, int64_t seq,
                   int64_t heads, int64_t headDim, double theta, int64_t offset);

/// The transpose (inverse) rotation: dx from dy (dx may alias dy).
Status ropeBackward(const float *dy, float *dx, int64_t batch, int64_t seq,
                    int64_t heads, int64_t headDim, double theta,
                    int64_t offset);

// ---- Attention ---------------------------------------------------------------------

/// Scaled dot-product attention with grouped-query heads.
/// q, out: [batch, seq, heads * headDim]; k, v: [batch, seq, kvHeads * headDim];
/// query head h reads kv head h / (heads / kvHeads) (heads % kvHeads == 0).
/// P = softmax(scale * q k^T) per (batch, head), keys j > i masked when causal,
/// max-subtracted; out = P v. lse: [batch, heads, seq], optional — each query
/// row's log(sum_j exp(scale * q k_j)), what attentionBackward needs to rebuild
/// P without a softmax. With `cp` active (context parallelism) q holds this
/// rank's two zig-zag chunks, k and v the sequence all-gathered over cp
/// ([batch, seq * cp.size, ...]) and the causal mask compares global positions.
Status attentionForward(const float *q, const float *k, const float *v,
                        float *out, int64_t batch, int64_t seq, int64_t heads,
                        int64_t kvHeads, int64_t headDim, float scale,
                        bool causal, float *lse, const CpChunks &cp = {});

/// What attentionForward saved for the backward: its output and log-sum-exp
/// (both, or neither: then the backward recomputes the softmax).
struct AttentionSaved {
  const float *out = nullptr;
  const float *lse = nullptr;
};

/// Gradients of attentionForward. With `saved`, P = exp(scale * q k^T - lse)
/// and rowsum(P * dP) = rowsum(dout * out), as the CUDA backward computes
/// them. dq like q; dk, dv like k, v — summed over the query heads that share
/// a kv head. All outputs overwritten.
Status attentionBackward(const float *q, const float *k, const float *v,
                         AttentionSaved saved, const float *dout, float *dq,
                         float *dk, float *dv, int64_t batch, int64_t seq,
                         int64_t heads, int64_t kvHeads, int64_t headDim,
                         float scale, bool causal, const CpChunks &cp = {});

/// One step of context parallelism's ring attention (cp-comm=ring; `cp`
/// active, `step` in [0, cp.size)): q, out [batch, seq, heads * headDim] are
/// this rank's two zig-zag chunks, k and v [batch, seq, kvHeads * headDim] the
/// chunk pair of rank cp.heldRank(step). The partial attention of the query
/// chunks against the held chunks they see (CpChunks::sees; pairs seen not at
/// all are skipped) is merged into out and lse [batch, heads, seq] by
/// log-sum-exp; step 0 starts them.
Status ringAttentionForward(const float *q, const float *k, const float *v, float *out,
                            float *lse, int64_t batch, int64_t seq, int64_t heads,
                            int64_t kvHeads, int64_t headDim, float scale, bool causal,
                            const CpChunks &cp, int64_t step);

/// The backward of one ring step, from the forward's final out and lse: the
/// step's part of dq is added into dq (step 0: written); dk and dv (like k
/// and v) get the held pair's gradient from this rank's queries (written).
Status ringAttentionBackward(const float *q, const float *k, const float *v,
                             AttentionSaved saved, const float *dout, float *dq, float *dk,
                             float *dv, int64_t batch, int64_t seq, int64_t heads,
                             int64_t kvHeads, int64_t headDim, float scale, bool causal,
                             const CpChunks &cp, int64_t step);

// ---- Loss ------------------------------------------------------------------------

/// Mean cross-entropy of logits [rows, vocab] against labels [rows]
/// (torch.nn.functional.cross_entropy, reduction "mean"; accumulated in double).
/// lossOut: scalar. rowLoss, logSumExp: [rows], optional (logSumExp is what
/// crossEntropyBackward needs). A label outside [0, vocab) gives InvalidArgument.
Status crossEntropyForward(const float *logits, const int64_t *labels,
                           int64_t rows, int64_t vocab, float *lossOut,
                           float *rowLoss, float *logSumExp);

/// dlogits = (softmax(logits) - onehot(labels)) * dloss / rows, where dloss is
/// the gradient of the mean loss and logSumExp comes from the forward (or null
/// to recompute). `totalRows` is the row count the mean divides by (pass rows,
/// or the global token count when the mean spans several micro-batches/ranks;
/// 0 means rows).
Status crossEntropyBackward(const float *logits, const int64_t *labels,
                            const float *logSumExp, float dloss, float *dlogits,
                            int64_t rows, int64_t vocab, int64_t totalRows);

/// The two above over logits stored as `dtype` (f32, or bf16/f16 bits): each
/// row is read in L1-sized vocab chunks widened to f32 on the stack, so no f32
/// copy of the logits is made; dlogits are stored as `dlogitsType` (rounded to
/// nearest even) and may be the logits buffer itself (same type: in place).
/// For f32 they are the functions above, bit for bit.
Status crossEntropyForwardStored(ScalarType dtype, const void *logits,
                                 const int64_t *labels, int64_t rows, int64_t vocab,
                                 float *lossOut, float *rowLoss, float *logSumExp);
Status crossEntropyBackwardStored(ScalarType dtype, const void *logits,
                                  const int64_t *labels, const float *logSumExp,
                                  float dloss, ScalarType dlogitsType, void *dlogits,
                                  int64_t rows, int64_t vocab, int64_t totalRows);

// ---- Norm backward ---------------------------------------------------------------

/// Gradients of rmsNormForward given dy and the saved rstd [rows].
/// dx: [rows, cols]; dweight: [cols] (overwritten, summed over rows).
Status rmsNormBackward(const float *dy, const float *x, const float *weight,
                       const float *rstd, float *dx, float *dweight,
                       int64_t rows, int64_t cols);

// ---- Optimizer -------------------------------------------------------------------

/// One torch.optim.AdamW step on n elements (step is 1-based):
///   p -= lr * weightDecay * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
///   p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps).
/// `gradScale` multiplies every gradient element first (clipping; 1: none).
Status adamwUpdate(float *param, const float *grad, float *m, float *v,
                   int64_t n, float lr, float beta1, float beta2, float eps,
                   float weightDecay, int64_t step, float gradScale = 1.0f);

/// torch.nn.utils.clip_grad_norm_'s factor for the global squared norm
/// `normSq` and threshold `maxNorm` (<= 0: no clipping, 1), in float as torch
/// computes it: min(1, (1 / (sqrt(normSq) + 1e-6)) * maxNorm).
float clipCoefficient(float normSq, float maxNorm);

/// Sum of the squares of n elements (accumulated in double), into *out.
Status gradNormSq(const float *x, int64_t n, float *out);

// ---- Inference (KV cache) ------------------------------------------------
// A cache is [batch, kvHeads, maxSeq, headDim]; `start` holds one position
// per sequence ([batch]); a position outside the cache is InvalidArgument.

/// Row s of sequence b of x [batch, seq, kvHeads * headDim] is written to
/// cache position start[b] + s (start optional: position s).
Status kvCacheWrite(const float *x, const int64_t *start, float *cache,
                    int64_t batch, int64_t seq, int64_t kvHeads,
                    int64_t maxSeq, int64_t headDim);

/// Query s of sequence b (q [batch, seq, heads * headDim]) attends cache
/// positions 0 .. start[b] + s; query head h reads kv head h / (heads /
/// kvHeads). out has q's shape.
Status cacheAttentionForward(const float *q, const float *kCache,
                             const float *vCache, const int64_t *start,
                             float *out, int64_t batch, int64_t seq,
                             int64_t heads, int64_t kvHeads, int64_t maxSeq,
                             int64_t headDim, float scale);

/// ropeForward with row s of sequence b at position start[b] + s.
Status ropeAtForward(const float *x, float *y, const int64_t *start,
                     int64_t batch, int64_t seq, int64_t heads,
                     int64_t headDim, double theta);

/// out[b] = x[b, lengths[b] - 1] for x [batch, seq, dim]; lengths in 1..seq.
Status lastTokenForward(const float *x, const int64_t *lengths, float *out,
                        int64_t batch, int64_t seq, int64_t dim);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_KERNELS_H
