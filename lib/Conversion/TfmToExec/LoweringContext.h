//===- LoweringContext.h - state of the tfm -> exec lowerings ---*- C++ -*-===//
//
// Private to lib/Conversion/TfmToExec. The LoweringContext holds what every
// op lowering needs (the planned buffers, the builder, the kernel/view/comm
// helpers); the lowerings themselves live, one function per op, in
//   LowerElementwise.cpp  - add, mul, scale, bias_add, gelu, silu, softmax and
//                           their grads, reduce_max, sum_rows,
//   LowerNorms.cpp        - layer_norm, rms_norm and their grads,
//   LowerGemm.cpp         - linear, matmul (exec.gemm),
//   LowerAttention.cpp    - attention, rope and their grads,
//   LowerLoss.cpp         - the cross-entropy family (plain, vocab-parallel),
//   LowerEmbedding.cpp    - embedding, embedding_grad, position_ids,
//   LowerDataMovement.cpp - reshape/tp_copy (views), transpose, split, concat,
//                           cast,
//   LowerCollectives.cpp  - shard.all_reduce/reduce_scatter/all_gather,
//                           tfm.send/recv, tfm.param_all_gather,
//   LowerOptimizer.cpp    - adamw_update, splat constants (fill),
//   LowerInference.cpp    - the KV-cache ops, rope_at, last_token,
// and TfmToExec.cpp schedules the ops, plans the arena and dispatches to them.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_LIB_CONVERSION_TFMTOEXEC_LOWERINGCONTEXT_H
#define LLMIR_LIB_CONVERSION_TFMTOEXEC_LOWERINGCONTEXT_H

#include "llmir/Dialect/Exec/IR/ExecDialect.h"
#include "llmir/Dialect/Tfm/IR/ContextParallel.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include <cstdint>
#include <limits>
#include <string>

namespace llmir::lowering {

constexpr int64_t kForever = std::numeric_limits<int64_t>::max();

/// Bytes of a tensor of type `t`.
int64_t sizeInBytes(mlir::RankedTensorType t);

/// One allocation in the arena; several tensors may view it (reshape,
/// layer results).
struct LogicalBuffer {
  enum class Kind { Param, State, Input, Temp };
  Kind kind = Kind::Temp;
  std::string name;            ///< HF name (Param) or input name (Input)
  unsigned argNumber = 0;      ///< function argument (Param, Input)
  mlir::RankedTensorType type; ///< the type of the tensor that defines it
  int64_t firstUse = 0, lastUse = 0;
  int64_t offset = 0;
  /// A view of part of another buffer (a piece of a contiguous concat's
  /// result or split's input): index of that buffer and the byte offset in
  /// it; -1 when the buffer is planned on its own.
  int parent = -1;
  int64_t offsetInParent = 0;
  mlir::Value buffer; ///< the exec value, once emitted
};

/// The buffers of one program and the helpers the op lowerings emit with.
/// ProgramLowering (TfmToExec.cpp) fills the tables while it schedules the
/// ops and plans the arena; the lowerings read them.
class LoweringContext {
public:
  explicit LoweringContext(mlir::MLIRContext *ctx) : b(ctx) {}

  /// The builder positioned in the program body.
  mlir::OpBuilder &builder() { return b; }

  /// The exec buffer holding `tensor`, viewed with the tensor's own shape.
  mlir::Value bufferFor(mlir::Value tensor);
  /// `bufferFor` of an operand / a result: the names say which way data flows.
  mlir::Value in(mlir::Value tensor) { return bufferFor(tensor); }
  mlir::Value out(mlir::Value tensor) { return bufferFor(tensor); }

  /// `buffer` reinterpreted with `shape` (no-op if it already has it).
  mlir::Value view(mlir::Value buffer, llvm::ArrayRef<int64_t> shape);

  /// An exec.kernel `name` on the compute stream, at `op`'s location.
  void kernel(mlir::Operation *op, llvm::StringRef name, mlir::ValueRange ins,
              mlir::ValueRange outs,
              llvm::ArrayRef<mlir::NamedAttribute> attrs = {});

  /// The plan's name of the single grid axis a collective runs over.
  mlir::FailureOr<llvm::StringRef> axisName(mlir::Operation *op);
  /// Size of the plan axis `axis` (ranks along it).
  mlir::FailureOr<int64_t> axisSize(mlir::Operation *op, llvm::StringRef axis);

  /// Emits `collective` on the communication stream, ordered after the
  /// compute that produced its input and before the compute that reads its
  /// output (events both ways).
  ///
  /// With `deferTo` (the tensor the collective produces) the compute stream
  /// only waits right before the first op that touches it, so the collective
  /// overlaps the compute in between (e.g. gradient all-reduces with the rest
  /// of the backward pass). `reads` (an exec buffer or view of one) is what
  /// the deferred collective reads when that is not `deferTo`'s buffer: the
  /// compute stream also waits before it writes memory overlapping that one.
  /// With `reads` alone (a send) the compute stream waits only for that.
  void onCommStream(mlir::Location loc, llvm::function_ref<void()> collective,
                    mlir::Value deferTo = mlir::Value(),
                    mlir::Value reads = mlir::Value());

  /// Makes the compute stream wait for collectives still producing any
  /// buffer `op` touches (all of them when `op` is null: the step's end).
  void waitForPending(mlir::Location loc, mlir::Operation *op);
  /// The event waitForPending(op) would wait for (the latest collective `op`
  /// needs; -1: `op` is ready now).
  int64_t lastPendingEventFor(mlir::Operation *op) const;

  /// The staging buffer planned for `op` (a gather/scatter along an inner
  /// dim, a tfm.param_all_gather's chunk); null if it has none.
  mlir::Value stagingBufferOf(mlir::Operation *op) const;
  /// The two AdamW moment buffers (exp_avg, exp_avg_sq) of `op`.
  std::pair<mlir::Value, mlir::Value> adamMomentsOf(mlir::Operation *op) const;
  /// The norm that the tfm.add `op` is fused with (add_layer_norm /
  /// add_rms_norm at the add), or null.
  mlir::Operation *fusedNormOf(mlir::Operation *op) const {
    return fusedNorm.lookup(op);
  }
  /// Whether `op` emits nothing: a reshape, or a concat / split whose pieces
  /// the memory plan placed inside the whole (ProgramLowering::placeViews).
  bool isView(mlir::Operation *op) const {
    return mlir::isa<tfm::ReshapeOp, tfm::TpCopyOp>(op) || viewOps.contains(op);
  }
  /// Whether `op` is a norm emitted with its residual add.
  bool isFusedNorm(mlir::Operation *op) const { return fusedNorms.contains(op); }
  /// What a tfm.linear is emitted with (LowerGemm.cpp): a tfm.gelu
  /// (gemm_bias_gelu) or the tfm.gelu_grad reading its result
  /// (gemm_dgelu_bgrad) and that one's tfm.sum_rows (the bias gradient).
  struct GemmEpilogue {
    mlir::Operation *activation = nullptr;
    mlir::Operation *biasGrad = nullptr;
  };
  GemmEpilogue epilogueOf(mlir::Operation *linear) const {
    return gemmEpilogues.lookup(linear);
  }
  /// Whether `op` is emitted by the GEMM before it (emits nothing itself).
  bool isFusedIntoGemm(mlir::Operation *op) const { return epilogueOps.contains(op); }
  /// The softmax log-sum-exp buffer the attention `op` saves for its
  /// attention_grad (training); null if it saves none.
  mlir::Value savedLseOf(mlir::Operation *op) const;
  /// The scratch buffers planned for a cp ring attention `op`, in the order
  /// of ringScratchTypes (LowerAttention.cpp).
  llvm::SmallVector<mlir::Value> ringScratchOf(mlir::Operation *op) const;
  /// A fresh event id.
  int64_t newEvent() { return nextEvent++; }

protected:
  mlir::OpBuilder b;
  llvm::SmallVector<LogicalBuffer> buffers;
  llvm::DenseMap<mlir::Value, unsigned> bufferOf;
  /// The two AdamW moment buffers of each tfm.adamw_update.
  llvm::DenseMap<mlir::Operation *, llvm::SmallVector<unsigned, 2>> adamState;
  /// The staging buffer of each gather/scatter that needs one.
  llvm::DenseMap<mlir::Operation *, unsigned> stagingBuffer;
  /// Residual adds fused with the norm they feed (add -> norm), and the norms.
  llvm::DenseMap<mlir::Operation *, mlir::Operation *> fusedNorm;
  llvm::SmallPtrSet<mlir::Operation *, 16> fusedNorms;
  /// GEMMs fused with their epilogue ops, and those ops.
  llvm::DenseMap<mlir::Operation *, GemmEpilogue> gemmEpilogues;
  llvm::SmallPtrSet<mlir::Operation *, 16> epilogueOps;
  /// The concats and splits lowered as views (no kernel).
  llvm::SmallPtrSet<mlir::Operation *, 16> viewOps;
  /// The log-sum-exp buffer of each tfm.attention with an attention_grad.
  llvm::DenseMap<mlir::Operation *, unsigned> attentionLse;
  /// The scratch buffers of each cp ring attention (its chunk slots).
  llvm::DenseMap<mlir::Operation *, llvm::SmallVector<unsigned>> ringScratch;
  /// Buffers written by a collective the compute stream has not waited for.
  llvm::MapVector<unsigned, int64_t> pendingEvent;
  /// Buffers read by such a collective (its input, a staging buffer): the
  /// plan may reuse their memory after the collective in program order, but
  /// the comm stream is still reading it.
  llvm::SmallVector<std::pair<unsigned, int64_t>> pendingReads;
  /// Drops the pending entries of comm `event` and those before it (the
  /// compute stream just waited for it).
  void forgetCompleted(int64_t event);
  int64_t nextEvent = 0;
};

// One lowering per op, grouped by the file that defines it. Each emits the
// exec ops of one tfm (or shard) op at the builder's position.
namespace arith = mlir::arith;
namespace shard = mlir::shard;
using mlir::LogicalResult;

// LowerElementwise.cpp
LogicalResult lowerOp(LoweringContext &c, tfm::AddOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::MulOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::ScaleOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::BiasAddOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::GeluOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::GeluGradOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::SiluOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::SiluGradOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::SoftmaxOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::ReduceMaxOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::SumRowsOp op);
// LowerNorms.cpp
/// The tfm.layer_norm / tfm.rms_norm that `add` can be fused with: the first
/// one whose input is the add's result, in the add's block, with weight and
/// bias available at the add (function arguments or earlier ops). Null if none.
mlir::Operation *fusableNorm(tfm::AddOp add);
/// Emits the fused add_layer_norm / add_rms_norm of `add` and `norm`.
LogicalResult lowerFusedAddNorm(LoweringContext &c, tfm::AddOp add,
                                mlir::Operation *norm);
LogicalResult lowerOp(LoweringContext &c, tfm::LayerNormOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::LayerNormGradOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::RMSNormOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::RMSNormGradOp op);
// LowerGemm.cpp
/// The epilogue `linear` can be emitted with, if any: a tanh tfm.gelu of its
/// result (the linear has a bias), or, for a bias-free linear whose only use
/// is a tanh tfm.gelu_grad's incoming gradient, that gelu_grad (its saved
/// input `available`) and the first tfm.sum_rows of its result.
LoweringContext::GemmEpilogue
fusableEpilogue(tfm::LinearOp linear, llvm::function_ref<bool(mlir::Value)> available);
LogicalResult lowerOp(LoweringContext &c, tfm::LinearOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::MatmulOp op);
// LowerAttention.cpp
/// The tfm.attention whose saved output and log-sum-exp `grad` reads: the one
/// over the same q, k, v with the same attributes, unless its output is
/// reduced in place (then it is not the forward's any more). Null if none.
tfm::AttentionOp savedForwardOf(tfm::AttentionGradOp grad);
/// The log-sum-exp buffer's type for `op`: f32 [batch, heads, seq].
mlir::RankedTensorType lseTypeOf(tfm::AttentionOp op);
/// cp-comm=ring: the scratch buffers `op` (an attention or attention_grad
/// with cp_comm = "ring") needs for the chunks in flight; `saveLse`: the
/// forward's log-sum-exp has a buffer of its own (training).
mlir::FailureOr<llvm::SmallVector<mlir::RankedTensorType>>
ringScratchTypes(LoweringContext &c, mlir::Operation *op, bool saveLse);
LogicalResult lowerOp(LoweringContext &c, tfm::AttentionOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::AttentionGradOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::RopeOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::RopeGradOp op);
// LowerLoss.cpp
/// The logits a loss gradient (cross_entropy_grad, cross_entropy_partial_grad)
/// overwrites with its dlogits, the memory plan giving both one buffer: bf16
/// or f16 of the dlogits' type, made by a compute op of the gradient's block
/// and read, before it, only by the loss family's forward. Null otherwise.
mlir::Value overwrittenLogits(mlir::Operation *grad);
LogicalResult lowerOp(LoweringContext &c, tfm::CrossEntropyOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::CrossEntropyGradOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::CrossEntropyPartialOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::CrossEntropyPartialGradOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::CrossEntropyFinalizeOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::CrossEntropyFinalizeGradOp op);
// LowerEmbedding.cpp
LogicalResult lowerOp(LoweringContext &c, tfm::EmbeddingOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::EmbeddingGradOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::PositionIdsOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::CpSliceOp op);
// LowerDataMovement.cpp
LogicalResult lowerOp(LoweringContext &c, tfm::ReshapeOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::TpCopyOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::TransposeOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::SplitOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::ConcatOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::CastOp op);
// LowerCollectives.cpp
LogicalResult lowerOp(LoweringContext &c, shard::AllReduceOp op);
LogicalResult lowerOp(LoweringContext &c, shard::ReduceScatterOp op);
LogicalResult lowerOp(LoweringContext &c, shard::AllGatherOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::SendOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::RecvOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::ParamAllGatherOp op);
// LowerOptimizer.cpp
LogicalResult lowerOp(LoweringContext &c, tfm::AdamWUpdateOp op);
/// `ops` starts with a tfm.adamw_update: it and the updates right after it
/// that are ready at the same point (no further wait) and alike (f32, whole
/// parameters, same betas, eps, norm and loss scaling) become one adamw_multi
/// (one adamw when alone), after the waits they need. Returns how many ops
/// of `ops` it lowered.
mlir::FailureOr<size_t> lowerAdamWUpdates(LoweringContext &c,
                                          llvm::ArrayRef<mlir::Operation *> ops);
LogicalResult lowerOp(LoweringContext &c, tfm::GradNormSqOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::LossScaleOp op);
LogicalResult lowerOp(LoweringContext &c, arith::ConstantOp op);
// LowerInference.cpp
LogicalResult lowerOp(LoweringContext &c, tfm::KvCacheWriteOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::CacheAttentionOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::RopeAtOp op);
LogicalResult lowerOp(LoweringContext &c, tfm::LastTokenOp op);

} // namespace llmir::lowering

#endif // LLMIR_LIB_CONVERSION_TFMTOEXEC_LOWERINGCONTEXT_H
