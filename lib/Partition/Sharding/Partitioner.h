//===- Partitioner.h - the per-function partitioner ----------- -*- C++ -*-===//
//
// Private to lib/Partition/Sharding. The Partitioner rewrites one model
// function to its per-rank form; its parts live in
//   PartitionRules.cpp    - the per-op rules (Megatron-LM), their collectives,
//   PartitionFunction.cpp - the signature: inputs and KV caches split over
//                           dp x micro-batches, parameter slices, explain,
//   StageTagging.cpp      - the pipeline stage of every op (pp > 1),
//   Partition.cpp         - the pass, the option checks and the module driver.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_LIB_PARTITION_SHARDING_PARTITIONER_H
#define LLMIR_LIB_PARTITION_SHARDING_PARTITIONER_H

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Partition/Strategy.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/Support/raw_ostream.h"

#include <map>
#include <string>

namespace llmir::partition {

// The names this private header uses (declarations, not directives).
namespace func = mlir::func;
namespace shard = mlir::shard;
using mlir::APInt;
using mlir::ArrayRef;
using mlir::Block;
using mlir::BlockArgument;
using mlir::cast;
using mlir::DenseMap;
using mlir::DenseSet;
using mlir::dyn_cast;
using mlir::failure;
using mlir::FailureOr;
using mlir::InFlightDiagnostic;
using mlir::LogicalResult;
using mlir::ModuleOp;
using mlir::NameLoc;
using mlir::OpBuilder;
using mlir::Operation;
using mlir::RankedTensorType;
using mlir::SmallVector;
using mlir::StringRef;
using mlir::success;
using mlir::Twine;
using mlir::Value;
using tfm::CrossEntropyOp;
using tfm::LayerOp;
using tfm::LinearOp;
using tfm::TfmDialect;

constexpr llvm::StringLiteral kGridName = "grid";

/// How a tensor is laid out over the tp axis.
struct Layout {
  bool sharded = false; ///< last dim split over tp
  int64_t parts = 1;    ///< the last dim is `parts` blocks, each split over tp
  bool seqSplit = false; ///< sequence parallel: dim 1 split over tp
};

/// The sequence dimension of [batch, seq, ...] activations.
constexpr int64_t kSeqDim = 1;

/// How a parameter is sliced over tp: its dim `dim` is `parts` blocks, each
/// split evenly; a rank holds its chunk of every block.
struct ParamShard {
  int64_t dim = 0;
  int64_t parts = 1;
  /// Vocab padding: dim `dim` is padded with zero rows to this size (a
  /// multiple of tp) before splitting; 0 when no padding is needed.
  int64_t paddedSize = 0;
};

/// Megatron-LM's rule: pad the vocabulary to a multiple of tp (here: the
/// smallest), so any vocab size can be split; padded rows are zero and the
/// cross-entropy masks their logits.
inline int64_t paddedVocab(int64_t vocab, int64_t tp) {
  return (vocab + tp - 1) / tp * tp;
}

inline RankedTensorType withShape(Value v, ArrayRef<int64_t> shape) {
  return RankedTensorType::get(shape,
                               cast<RankedTensorType>(v.getType()).getElementType());
}

inline ArrayRef<int64_t> shapeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}

class Partitioner {
public:
  Partitioner(ModuleOp module, func::FuncOp func, const PartitionOptions &o,
              PartitionStrategy *strategy)
      : module(module), func(func), dp(o.dp), tp(o.tp),
        microbatches(o.microbatches), cp(o.cp), cpRing(o.cpComm == "ring"), sp(o.sp), explain(o.explain),
        strategy(strategy), builder(func.getContext()) {
    // With pipeline parallelism the grid is pp x dp x tp (pp slowest in the
    // rank numbering, tp fastest: tp groups stay within a node).
    // Context parallelism adds cp between dp and tp.
    int16_t first = o.pp > 1 ? 1 : 0;
    dpAxis = first;
    cpAxis = o.cp > 1 ? first + 1 : -1;
    tpAxis = first + (o.cp > 1 ? 2 : 1);
  }

  LogicalResult run();

private:
  LogicalResult partitionBlock(Block &block);
  LogicalResult partitionOp(Operation *op);
  LogicalResult partitionLinear(LinearOp op);
  LogicalResult partitionCrossEntropy(CrossEntropyOp op);
  /// Context parallelism: `v` ([batch, seq, ...]) replaced after `after` by
  /// this rank's two zig-zag chunks of the sequence (tfm.cp_slice).
  LogicalResult sliceForCp(Operation *anchor, Value v, bool atStart);
  /// Context parallelism: the attention's K and V all-gathered over cp (or,
  /// with cp-comm=ring, marked for the ring exchange), the causal mask by
  /// global positions.
  LogicalResult partitionAttentionCp(tfm::AttentionOp op);
  /// Context parallelism: `local` (this rank's chunks) all-gathered over cp
  /// along the sequence before `user` (once per value; zig-zag order).
  Value gatherSequenceOverCp(Operation *user, Value local);
  /// The same, reordered to global positions (split + concat): the whole
  /// prompt's keys/values for the KV cache, the last token's hidden state.
  Value sequenceInGlobalOrder(Operation *user, Value local);
  /// Inference: the prompt width must split into 2 x cp chunks.
  LogicalResult checkPromptWidthForCp();
  /// Per layer: the collectives emitted beside the analytic minimum.
  void explainLayerCommunication();

  /// Records that `user` needs parameter `param` whole.
  LogicalResult useWhole(Operation *user, Value param) {
    if (paramShards.contains(param))
      return user->emitOpError() << "uses whole a parameter that another op "
                                    "shards over tp (e.g. a tied LM head)";
    if (isParam(param))
      wholeUses.insert(param);
    return success();
  }

  /// Records that parameter `param` is sliced as `shard`; a parameter used in
  /// two incompatible ways is an error.
  LogicalResult shardParam(Operation *user, Value param, ParamShard shard);

  /// `v` all-reduced over `axis`; every other use of `v` after `after` reads
  /// the result.
  Value allReduce(Operation *after, Value v, int16_t axis,
                  shard::ReductionKind kind = shard::ReductionKind::Sum) {
    builder.setInsertionPointAfter(after);
    auto ar = shard::AllReduceOp::create(builder, after->getLoc(), v.getType(),
                                         kGridName, ArrayRef<int16_t>{axis}, v,
                                         kind);
    v.replaceAllUsesExcept(ar.getResult(), ar);
    return ar.getResult();
  }

  /// Type of an activation with its batch (dim 0) split over dp.
  FailureOr<RankedTensorType> batchSplit(Operation *op, Value v,
                                         ArrayRef<int64_t> global) {
    SmallVector<int64_t> shape(global);
    int64_t parts = dp * microbatches;
    if (shape.empty() || parts == 1)
      return withShape(v, shape);
    if (shape[0] % parts != 0) {
      InFlightDiagnostic d = op->emitOpError()
                             << "cannot split the batch dimension (" << shape[0]
                             << ") over dp=" << dp;
      if (microbatches > 1)
        d << " x microbatches=" << microbatches;
      return failure();
    }
    shape[0] /= parts;
    return withShape(v, shape);
  }

  bool isParam(Value v) {
    auto arg = dyn_cast<BlockArgument>(v);
    return arg && arg.getOwner()->isEntryBlock() &&
           arg.getOwner()->getParentOp() == func &&
           func.getArgAttr(arg.getArgNumber(), TfmDialect::kParamAttrName);
  }

  /// "h.0.attn.c_attn" when the importer named the op, else the op name
  /// and its layer.
  std::string nameOf(Operation *op) {
    if (auto loc = dyn_cast<NameLoc>(op->getLoc()))
      return loc.getName().str();
    std::string name = op->getName().getStringRef().str();
    if (auto layer = op->getParentOfType<LayerOp>())
      name = "layer " + std::to_string(layer.getIndex()) + " " + name;
    return name;
  }

  void note(Operation *op, const Twine &decision) {
    if (explain)
      llvm::outs() << "explain: " << nameOf(op) << ": " << decision << "\n";
  }

  /// Sequence parallelism: `v` (split over tp, partial sums) reduce-scattered
  /// along the sequence; every other use of `v` reads the result.
  FailureOr<Value> reduceScatterSeq(Operation *after, Value v) {
    SmallVector<int64_t> shape(shapeOf(v));
    if (shape.size() < 2 || shape[kSeqDim] % tp != 0)
      return after->emitOpError()
             << "cannot split the sequence ("
             << (shape.size() < 2 ? 0 : shape[kSeqDim]) << ") over tp=" << tp
             << " for sequence parallelism",
             failure();
    shape[kSeqDim] /= tp;
    builder.setInsertionPointAfter(after);
    auto rs = shard::ReduceScatterOp::create(
        builder, after->getLoc(), withShape(v, shape), kGridName,
        ArrayRef<int16_t>{tpAxis}, v, shard::ReductionKind::Sum,
        APInt(64, kSeqDim));
    v.replaceAllUsesExcept(rs.getResult(), rs);
    layouts[rs.getResult()] = {false, 1, true};
    return rs.getResult();
  }

  /// Sequence parallelism: the full sequence of a sequence-split `v`,
  /// gathered once per value (before column-parallel ops).
  Value allGatherSeq(Operation *before, Value v) {
    auto [it, inserted] = seqGathers.try_emplace(v, Value());
    if (!inserted)
      return it->second;
    SmallVector<int64_t> shape(shapeOf(v));
    shape[kSeqDim] *= tp;
    builder.setInsertionPoint(before);
    auto ag = shard::AllGatherOp::create(builder, before->getLoc(),
                                         withShape(v, shape), kGridName,
                                         ArrayRef<int16_t>{tpAxis}, v,
                                         APInt(64, kSeqDim));
    layouts[ag.getResult()] = {};
    return it->second = ag.getResult();
  }

  /// A replicated parameter used on a sequence block only sees its block's
  /// gradient: the train step sums it over tp (Megatron's SP param sync).
  void markSequenceParallelGrad(Value v) {
    if (isParam(v))
      gradSums[cast<BlockArgument>(v).getArgNumber()] = "tp";
  }

  ModuleOp module;
  func::FuncOp func;
  int64_t dp, tp, microbatches, cp;
  bool cpRing; ///< cp-comm=ring: K/V passed around the cp ring, not all-gathered
  bool sp, explain;
  /// Grid axes of dp and tp (after pp when the plan has one).
  int16_t dpAxis = 0, tpAxis = 1;
  int16_t cpAxis = -1; ///< the cp axis (cp > 1 only)
  PartitionStrategy *strategy; ///< null: Megatron's rules
  DenseMap<Value, Value> seqGathers; ///< sequence-split value -> its all-gather
  /// Arguments whose gradient the train step sums over an axis (SP params).
  std::map<unsigned, std::string> gradSums;
  OpBuilder builder;
  DenseMap<Value, Layout> layouts;
  DenseMap<Value, ParamShard> paramShards;
  DenseSet<Value> wholeUses; ///< parameters some op needs whole under tp
  DenseMap<Value, Value> tpCopies; ///< replicated value -> its tfm.tp_copy
  int64_t vocabSize = 0; ///< true vocab of a padded vocab-parallel LM head
  /// The function has resident state (KV caches): an inference entry point.
  bool inference = false;
  /// cp splits this function's sequence: training, evaluation and prefill
  /// (decode runs replicated over cp).
  bool cpSplit = false;
  DenseMap<Value, Value> cpGathers; ///< cp-split value -> its all-gather
  SmallVector<Operation *> lossOps;
};

/// Tags the ops of `func` (partitioned) with their pipeline stage
/// (`llmir.stage`) over `numStages` virtual stages, split by `layout` (or by
/// cost when empty), and returns the layout used; prints the stages with
/// `o.explain`.
FailureOr<std::string> tagPipelineStages(func::FuncOp func,
                                         const PartitionOptions &o,
                                         int64_t numStages, StringRef layout);

} // namespace llmir::partition

#endif // LLMIR_LIB_PARTITION_SHARDING_PARTITIONER_H
