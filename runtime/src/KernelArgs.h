// Backend-independent decoding of kernel instructions: operand counts, shape
// and size checks and attribute parsing, shared by the CPU backend
// (src/cpu/CpuBackend.cpp) and the CUDA backend (src/cuda/CudaBackend.cu).
// Each decode function checks an Instr in the order both backends always did
// and returns a typed argument struct (or the error Status, with the same
// message); the backends keep only their own launch code and any checks of
// their own.
#ifndef LLMIR_RUNTIME_SRC_KERNELARGS_H
#define LLMIR_RUNTIME_SRC_KERNELARGS_H

#include "llmir/runtime/Backend.h"
#include "llmir/runtime/ContextParallel.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

/// `lhs = *expr` for a StatusOr `expr`, or return its error Status from the
/// enclosing function: LLMIR_ASSIGN_OR_RETURN(const kargs::GemmArgs g, decodeGemm(i));
#define LLMIR_ASSIGN_OR_RETURN(lhs, expr)                                      \
  LLMIR_ASSIGN_OR_RETURN_IMPL_(LLMIR_STATUSOR_NAME_(__LINE__), lhs, expr)
#define LLMIR_STATUSOR_NAME_(line) LLMIR_STATUSOR_NAME2_(line)
#define LLMIR_STATUSOR_NAME2_(line) llmirStatusOr##line##_
#define LLMIR_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)                           \
  auto tmp = (expr);                                                           \
  if (!tmp.isOk())                                                             \
    return tmp.status();                                                       \
  lhs = std::move(*tmp)

namespace llmir::runtime::kargs {

Status invalid(const std::string &message);

/// Product of shape[begin, end).
int64_t product(const std::vector<int64_t> &shape, size_t begin, size_t end);

/// Last dimension (1 for scalars) and the number of rows before it.
std::pair<int64_t, int64_t> rowsCols(const BufferRef &b);

Status requireSameElements(const BufferRef &a, const BufferRef &b);

/// An integer (i32 or i64) id buffer.
Status requireIds(const Instr &instr, const BufferRef &b);

/// reduction = "sum" (otherwise mean).
bool isSum(const Instr &instr);

/// This rank's (index, size) along the mesh axis named by attribute `attr`.
StatusOr<std::pair<int, int>> axisPosition(const Instr &instr, const KernelContext &context,
                                           const std::string &attr);

// ---- elementwise, row and copy kernels --------------------------------------
/// One input, one output of the same size (unary kernels, copy).
Status checkUnary(const Instr &instr);
/// Two inputs, one output, all of the same size (binary kernels, activation grads).
Status checkBinary(const Instr &instr);

struct RowsCols {
  int64_t rows = 0, cols = 0;
};
StatusOr<RowsCols> decodeSoftmax(const Instr &instr);
StatusOr<RowsCols> decodeBiasAdd(const Instr &instr);
StatusOr<RowsCols> decodeReduceMax(const Instr &instr);
StatusOr<RowsCols> decodeSumRows(const Instr &instr);
/// scale: the factor.
StatusOr<double> decodeScale(const Instr &instr);
/// fill: the value.
StatusOr<float> decodeFill(const Instr &instr);

struct PositionIdsArgs {
  int64_t rows = 0, cols = 0, first = 0;
};
/// position_ids; `requireInteger`: reject an output that is not i32 or i64.
StatusOr<PositionIdsArgs> decodePositionIds(const Instr &instr, const KernelContext &context,
                                            bool requireInteger);

struct ConcatArgs {
  size_t axis = 0;
  int64_t outer = 0, inner = 0, dstCols = 0;
};
StatusOr<ConcatArgs> decodeConcat(const Instr &instr);
/// The columns (src.shape[axis] * inner) input `src` adds at `offset`.
StatusOr<int64_t> concatInputCols(const Instr &instr, const ConcatArgs &c,
                                  const BufferRef &src, int64_t offset);

struct TransposeArgs {
  std::vector<int64_t> perm;       ///< output dim d is input dim perm[d]
  std::vector<int64_t> srcStrides; ///< row-major strides of the input
};
/// transpose; a rank above `maxRank` (when > 0) is Unimplemented on `backend`.
StatusOr<TransposeArgs> decodeTranspose(const Instr &instr, size_t maxRank,
                                        const std::string &backend);

// ---- gemm -------------------------------------------------------------------
struct GemmArgs {
  const BufferRef *a = nullptr, *b = nullptr, *c = nullptr;
  const BufferRef *bias = nullptr; ///< ins[2] when present (see checkGemmBias)
  bool transA = false, transB = false;
  double alpha = 1.0, beta = 0.0;
  size_t rank = 0;
  int64_t aRows = 0, aCols = 0, bRows = 0, bCols = 0;
  int64_t m = 0, n = 0, k = 0, batch = 1;
};
/// Operands, attributes, shapes and batch sizes (not the bias).
StatusOr<GemmArgs> decodeGemm(const Instr &instr);
/// The optional bias has n elements.
Status checkGemmBias(const GemmArgs &g);
/// gemm_bias_gelu / gemm_dgelu_bgrad (Kernels.def): a 2-D GEMM of ins[0] and
/// ins[1] into outs[0] (`gemm.bias` unset), its epilogue operands checked.
struct GemmEpilogueArgs {
  GemmArgs gemm;
  const BufferRef *bias = nullptr; ///< gemm_bias_gelu: ins[2], [n]
  const BufferRef *pre = nullptr;  ///< the pre-activation: outs[1] (forward) or ins[2]
  const BufferRef *dbias = nullptr; ///< gemm_dgelu_bgrad: outs[1], [n]
  bool backward = false;
};
StatusOr<GemmEpilogueArgs> decodeGemmEpilogue(const Instr &instr);

// ---- attention and rope -----------------------------------------------------
/// The attributes of an attention (or attention_grad) instruction, checked
/// against q [batch, seq, heads * headDim] and k [batch, seq, kvHeads * headDim].
struct AttentionShape {
  int64_t heads = 0, kvHeads = 0, headDim = 0;
  float scale = 0;
  bool causal = false;
};
StatusOr<AttentionShape> attentionShape(const Instr &instr, const BufferRef &q,
                                        const BufferRef &k);
/// The error attentionShape gives for shapes that do not fit the heads.
Status attentionShapeError(const Instr &instr, const BufferRef &q, const BufferRef &k,
                           int64_t heads, int64_t kvHeads);
/// An attention or attention_grad instruction, its operands checked: q, k, v
/// (k and v alike, batch and seq of q); attention's output like q and optional
/// outs[1]; attention_grad's dO and gradients, and the optional saved forward
/// (ins[4] the output, like q; ins[5] the log-sum-exp). The log-sum-exp holds
/// batch * heads * seq f32 values (staging keeps f32 buffers f32).
struct AttentionArgs {
  AttentionShape shape;
  int64_t batch = 0, seq = 0;
  CpChunks cp; ///< with `cp_axis`: k and v hold seq * cp.size rows
  const BufferRef *out = nullptr; ///< attention_grad: the saved output, or null
  const BufferRef *lse = nullptr; ///< the saved log-sum-exp, or null
};
/// With a `cp_axis` attribute (context parallelism) `context` gives this
/// rank's position along it; then k and v hold the sequence all-gathered over
/// that axis.
StatusOr<AttentionArgs> decodeAttention(const Instr &instr,
                                        const KernelContext *context = nullptr);

/// attention_ring / attention_ring_grad (cp-comm=ring): q, k and v of one
/// local sequence (k, v: the held chunk pair), the forward's output and
/// log-sum-exp (outs, or the backward's ins[4..5]), the ring step.
struct RingAttentionArgs {
  AttentionShape shape;
  int64_t batch = 0, seq = 0, step = 0;
  CpChunks cp;
};
StatusOr<RingAttentionArgs> decodeRingAttention(const Instr &instr,
                                                const KernelContext &context);

/// Context parallelism: this rank's zig-zag chunks of a local sequence of
/// `localSeq` rows, from the instruction's `cp_axis` (inactive without one).
StatusOr<CpChunks> decodeCp(const Instr &instr, const KernelContext &context,
                            int64_t localSeq);

/// cp_slice: ins[0] [outer, seq, ...] -> outs[0] [outer, seq / cp, ...], this
/// rank's two zig-zag chunks along dim 1 (any element type; sizes in bytes).
struct CpSliceArgs {
  int64_t outer = 0, seq = 0, rowBytes = 0;
  CpChunks cp;
};
StatusOr<CpSliceArgs> decodeCpSlice(const Instr &instr, const KernelContext &context);

/// The attributes of a rope (or rope_grad) instruction, checked against its
/// input x [batch, seq, heads * headDim].
struct RopeShape {
  int64_t heads = 0, headDim = 0, offset = 0;
  double theta = 0;
};
StatusOr<RopeShape> ropeShape(const Instr &instr, const BufferRef &x);
/// A backend's own limits on a rope shape (checked right after ropeShape).
using RopeLimits = Status (*)(const Instr &instr, const RopeShape &r);
/// rope / rope_grad: one input, one output of the same size.
StatusOr<RopeShape> decodeRope(const Instr &instr, RopeLimits limits = nullptr);

// ---- norms ------------------------------------------------------------------
struct NormArgs {
  const BufferRef *x = nullptr, *gamma = nullptr, *y = nullptr;
  const BufferRef *bias = nullptr; ///< layer_norm's optional ins[2] (see checkNormBias)
  int64_t rows = 0, cols = 0;
  double eps = 0;
};
/// layer_norm / rms_norm (not the bias).
StatusOr<NormArgs> decodeNorm(const Instr &instr);
/// add_layer_norm / add_rms_norm: the addends (ins[0], ins[1]) and their sum
/// (outs[0]) alike; `norm` normalizes the sum (x) into outs[1], bias checked.
struct AddNormArgs {
  const BufferRef *a = nullptr, *b = nullptr;
  NormArgs norm;
};
StatusOr<AddNormArgs> decodeAddNorm(const Instr &instr);
/// The unfused pair an add_layer_norm / add_rms_norm equals: "add" (a + b ->
/// sum) then "layer_norm" / "rms_norm" (sum -> y); what a backend runs where it
/// has no fused kernel for the operands' types (each part staged as usual).
StatusOr<std::pair<Instr, Instr>> splitAddNorm(const Instr &instr);
Status checkNormBias(const NormArgs &n);

struct NormGradArgs {
  bool layer = false; ///< layer_norm_grad (else rms_norm_grad)
  const BufferRef *x = nullptr, *gamma = nullptr, *dy = nullptr;
  int64_t rows = 0, cols = 0;
  double eps = 0;
};
StatusOr<NormGradArgs> decodeNormGrad(const Instr &instr);

// ---- embedding --------------------------------------------------------------
struct EmbeddingArgs {
  const BufferRef *ids = nullptr, *table = nullptr, *out = nullptr;
  int64_t numIds = 0, rows = 0, dim = 0;
  bool sharded = false;         ///< vocab-parallel (shard_axis)
  int64_t first = 0, vocab = 0; ///< this rank's rows [first, first + rows) of vocab
};
StatusOr<EmbeddingArgs> decodeEmbedding(const Instr &instr, const KernelContext &context);

struct EmbeddingGradArgs {
  const BufferRef *ids = nullptr, *dout = nullptr, *dtable = nullptr;
  int64_t numIds = 0, rows = 0, dim = 0;
  bool sharded = false;
};
/// Not the shard position (see shardFirstRow).
StatusOr<EmbeddingGradArgs> decodeEmbeddingGrad(const Instr &instr);
/// The first vocab row of this rank's shard of `rows` rows.
StatusOr<int64_t> shardFirstRow(const Instr &instr, const KernelContext &context,
                                int64_t rows);

// ---- cross entropy ----------------------------------------------------------
struct CrossEntropyArgs {
  const BufferRef *logits = nullptr, *labels = nullptr, *loss = nullptr;
  int64_t rows = 0, vocab = 0;
  bool sum = false;
};
/// cross_entropy (labels not yet checked to be integer ids).
StatusOr<CrossEntropyArgs> decodeCrossEntropy(const Instr &instr);

struct CrossEntropyPartialArgs {
  const BufferRef *logits = nullptr, *labels = nullptr, *max = nullptr;
  const BufferRef *sumExp = nullptr, *target = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t first = 0; ///< this rank's first vocab column
  int64_t valid = 0; ///< columns below the real vocab size
  int64_t vocab = 0; ///< the (real) vocab size labels must be below
};
StatusOr<CrossEntropyPartialArgs> decodeCrossEntropyPartial(const Instr &instr,
                                                            const KernelContext &context);

struct CrossEntropyFinalizeArgs {
  int64_t rows = 0;
  bool sum = false;
};
StatusOr<CrossEntropyFinalizeArgs> decodeCrossEntropyFinalize(const Instr &instr);

struct CrossEntropyGradArgs {
  const BufferRef *logits = nullptr, *labels = nullptr, *dloss = nullptr, *dlogits = nullptr;
  int64_t rows = 0, vocab = 0;
  bool sum = false;
};
StatusOr<CrossEntropyGradArgs> decodeCrossEntropyGrad(const Instr &instr);

struct CrossEntropyPartialGradArgs {
  const BufferRef *logits = nullptr, *labels = nullptr;
  int64_t rows = 0, cols = 0, first = 0, valid = 0;
};
StatusOr<CrossEntropyPartialGradArgs>
decodeCrossEntropyPartialGrad(const Instr &instr, const KernelContext &context);

/// cross_entropy_finalize_grad.
StatusOr<CrossEntropyFinalizeArgs> decodeCrossEntropyFinalizeGrad(const Instr &instr);

// ---- data movement ----------------------------------------------------------
struct CopySliceArgs {
  int64_t outer = 0, inner = 0, offset = 0, srcCols = 0, dstCols = 0;
};
StatusOr<CopySliceArgs> decodeCopySlice(const Instr &instr);

/// copy_chunk: out = chunk `index` of in (elements [index * n, (index + 1) * n)).
struct CopyChunkArgs {
  int64_t n = 0, srcOffset = 0;
};
StatusOr<CopyChunkArgs> decodeCopyChunk(const Instr &instr, const KernelContext &context);

// ---- optimizer --------------------------------------------------------------
struct AdamwArgs {
  const BufferRef *grad = nullptr, *param = nullptr, *m = nullptr, *v = nullptr;
  /// The global squared gradient norm (one f32), or null: no clipping.
  const BufferRef *normSq = nullptr;
  int64_t paramOffset = 0; ///< ZeRO-1: this rank's chunk of the parameter
  double beta1 = 0, beta2 = 0, eps = 0;
  bool decay = false;
  /// The gradient carries the loss scale: unscale, skip on a non-finite norm.
  bool lossScaled = false;
};
StatusOr<AdamwArgs> decodeAdamw(const Instr &instr, const KernelContext &context);
/// adamw_multi: one AdamwArgs per gradient (f32 operands, whole parameters).
StatusOr<std::vector<AdamwArgs>> decodeAdamwMulti(const Instr &instr);
/// The error for update `a`'s non-finite gradient (element `index`).
Status nonFiniteGradient(const AdamwArgs &a, int64_t index, const KernelContext &context);
/// grad_norm_sq: ins[0] any float buffer, outs[0] one f32.
Status checkGradNormSq(const Instr &instr);
/// loss_scale: outs[0] one f32.
Status checkLossScale(const Instr &instr);

// ---- text generation (KV cache) ---------------------------------------------
struct KvCacheWriteArgs {
  const BufferRef *x = nullptr, *cache = nullptr;
  const BufferRef *positions = nullptr; ///< optional integer ids [batch]
  int64_t batch = 0, seq = 0, kvHeads = 0, maxSeq = 0, headDim = 0;
};
StatusOr<KvCacheWriteArgs> decodeKvCacheWrite(const Instr &instr);

struct CacheAttentionArgs {
  int64_t heads = 0, kvHeads = 0;
  double scale = 0;
};
/// cache_attention (positions not yet checked to be integer ids).
StatusOr<CacheAttentionArgs> decodeCacheAttention(const Instr &instr);

struct RopeAtArgs {
  int64_t heads = 0, headDim = 0;
  double theta = 0;
};
StatusOr<RopeAtArgs> decodeRopeAt(const Instr &instr);

/// last_token (lengths not yet checked to be integer ids).
Status decodeLastToken(const Instr &instr);

} // namespace llmir::runtime::kargs

#endif // LLMIR_RUNTIME_SRC_KERNELARGS_H
