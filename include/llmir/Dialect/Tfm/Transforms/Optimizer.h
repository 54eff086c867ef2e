//===- Optimizer.h - gradient synchronisation and AdamW ---------*- C++ -*-===//
//
// The end of a train step, shared by --tfm-build-train-step (one step over
// the whole batch) and --llm-pipeline-split (one program per pipeline rank,
// after its micro-batches): data-parallel gradient all-reduce in buckets, or
// ZeRO-1's reduce-scatter / all-gather; the sequence-parallel gradient sum
// of replicated parameters; the AdamW update.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_TRANSFORMS_OPTIMIZER_H
#define LLMIR_DIALECT_TFM_TRANSFORMS_OPTIMIZER_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallVector.h"

namespace llmir::tfm {

struct OptimizerOptions {
  /// Gradient bucket size for the dp all-reduce.
  int64_t bucketBytes = 25 << 20;
  /// All-reduce the buckets in bf16 (fp32 accumulation in the runtime).
  bool bf16Comm = false;
  /// Compute the global gradient norm (tfm.grad_norm_sq partials, summed
  /// over the axes where gradients are sharded) and hand it to every AdamW
  /// update, which clips by it when the runtime gives a threshold.
  bool gradNorm = false;
  /// f16 training: the gradients carry the runtime's loss scale
  /// (tfm.loss_scale seeds the backward); every update is `loss_scaled`
  /// (unscale, skip on overflow), which needs the global norm (gradNorm).
  bool lossScaled = false;
};

class OptimizerBuilder {
public:
  /// Emits through `b` (its insertion point) for the parameters of `func`,
  /// reading dp and ZeRO from the module's llmir.plan.
  OptimizerBuilder(mlir::OpBuilder &b, mlir::ModuleOp module,
                   mlir::func::FuncOp func, const OptimizerOptions &options);

  /// True when gradients are reduced over dp as they become final: all-reduced
  /// in buckets (dp > 1 without ZeRO), or reduce-scattered one by one
  /// (ZeRO-2); each final gradient goes through addToBucket.
  bool bucketed() const { return bucketed_; }

  /// Adds `param`'s final gradient to the open bucket; all-reduces the
  /// bucket once it holds `bucketBytes`.
  void addToBucket(mlir::BlockArgument param, mlir::Value grad,
                   mlir::Location loc);
  /// All-reduces the open bucket (if any).
  void flushBucket(mlir::Location loc);

  /// zero=3 with zero3_gather = "microbatch": one micro-batch's gradient
  /// reduce-scattered at once into this rank's chunk, for the caller to
  /// accumulate over micro-batches; null otherwise (the caller sums the
  /// full gradients and hands the sum to addToBucket).
  mlir::Value reduceScatterMicrobatch(mlir::Value grad, mlir::Location loc);
  /// `param`'s reduced chunk, summed over the micro-batches'
  /// reduceScatterMicrobatch results (instead of addToBucket).
  void addReducedChunk(mlir::BlockArgument param, mlir::Value chunk);

  /// For each parameter with a gradient: the sequence-parallel sum, ZeRO-1's
  /// reduce-scatter, the AdamW update (torch.optim.AdamW: betas 0.9/0.95,
  /// eps 1e-8, decay on rank >= 2) and ZeRO-1's all-gather. `grads` holds
  /// each parameter's unreduced gradient; bucketed ones use their reduced
  /// gradient instead.
  mlir::LogicalResult
  emitUpdates(llvm::ArrayRef<std::pair<mlir::BlockArgument, mlir::Value>> grads);

  /// Leaves `param` out of the gradient norm on this program (a parameter
  /// shared across pipeline stages is counted on one holder only).
  void excludeFromNorm(mlir::BlockArgument param) { normExcluded.push_back(param); }

private:
  mlir::Value reshape(mlir::Value v, llvm::ArrayRef<int64_t> shape,
                      mlir::Location loc);
  /// A flat bucket summed over the data ranks, dp x cp (context-parallel
  /// ranks hold partial gradients too): one all-reduce over an axis of size
  /// > 1; with both, reduce-scatter over cp, all-reduce of the chunk over dp,
  /// all-gather over cp (2(n-1)/n of the bucket per rank for n = dp x cp,
  /// the flat all-reduce's minimum).
  mlir::Value reduceOverDataRanks(mlir::Value flat, mlir::Location loc);
  /// This rank's flat chunk of `grad` summed over the data ranks (ZeRO):
  /// reduce-scattered over the ZeRO axis (lookupZeroAxis), then, sharded
  /// over dp with cp > 1, the chunk all-reduced over cp. Per rank that moves
  /// (dp-1)/dp + 2(cp-1)/(cp dp) of the gradient; with the parameters'
  /// (dp-1)/dp all-gather, 2(n-1)/n for n = dp x cp: a flat reduce-scatter
  /// and all-gather over all dp x cp ranks move no less.
  mlir::Value reduceScatterChunk(mlir::Value grad, mlir::Location loc);

  /// One parameter's final gradient (reduced, ZeRO-1 chunk), ready for AdamW.
  struct Update {
    mlir::BlockArgument param;
    mlir::Value grad;
    mlir::UnitAttr decay;
    mlir::StringAttr shardAxis;
  };
  void emitUpdate(const Update &update, mlir::Value normSq);
  /// The global sum of squared gradients, the same on every rank.
  mlir::Value emitGradNormSq(llvm::ArrayRef<Update> updates);

  mlir::OpBuilder &b;
  mlir::ModuleOp module;
  mlir::func::FuncOp func;
  OptimizerOptions options;
  int16_t dpAxis = -1, cpAxis = -1;
  int64_t dp = 1, cp = 1;
  bool zero = false, bucketed_ = false;
  /// The axis ZeRO shards over (dp, or cp without dp) and its size.
  llvm::StringRef zeroAxisName;
  int16_t zeroAxisIndex = -1;
  int64_t zeroRanks = 1;
  /// ZeRO-2: addToBucket reduce-scatters at once (reducedGrads holds chunks).
  bool zeroGradients = false;
  int64_t zeroStage = 0;
  /// zero=3 reduce-scatters each micro-batch's gradient (zero3_gather).
  bool scatterPerMicrobatch = false;
  llvm::SmallVector<std::pair<mlir::BlockArgument, mlir::Value>> bucket;
  int64_t bucketFill = 0;
  /// An all-reduced bucket whose pieces are cut out only where the optimizer
  /// first reads one of them, so that nothing waits for the collective
  /// before then (the lowering puts the wait before the first reader).
  struct ReducedBucket {
    mlir::Value reduced; ///< the all-reduce result (bf16 under compression)
    llvm::SmallVector<mlir::BlockArgument> params;
    mlir::Location loc;
    bool unpacked = false;
  };
  void unpackBucket(ReducedBucket &bucket);
  llvm::SmallVector<ReducedBucket> reducedBuckets;
  llvm::DenseMap<mlir::Value, unsigned> bucketOf; ///< param -> reducedBuckets index
  llvm::DenseMap<mlir::Value, mlir::Value> reducedGrads;
  /// param -> position in the order addToBucket saw the gradients.
  llvm::DenseMap<mlir::Value, size_t> reductionOrder;
  llvm::SmallVector<mlir::BlockArgument> normExcluded;
};

} // namespace llmir::tfm

#endif // LLMIR_DIALECT_TFM_TRANSFORMS_OPTIMIZER_H
