//===- Partition.cpp - data, tensor and vocab parallel partitioning -------===//
//
// One forward walk over the model in program order. Each tensor carries a
// layout over the `tp` axis (replicated, or split along its last dimension in
// `parts` equal parts); each op's local form follows from its operands'
// layouts by Megatron-LM's rules, and the collectives it needs are inserted
// right there. Types are rewritten in place to the per-rank shapes.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/Transforms/MixedPrecision.h"
#include "llmir/Partition/Passes.h"
#include "llmir/Partition/Strategy.h"
#include "llmir/Partition/Pipeline/Stages.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <map>
#include <string>

namespace llmir {
#define GEN_PASS_DEF_LLMPARTITION
#include "llmir/Partition/Passes.h.inc"
} // namespace llmir

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

namespace {

constexpr StringLiteral kGridName = "grid";

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
int64_t paddedVocab(int64_t vocab, int64_t tp) {
  return (vocab + tp - 1) / tp * tp;
}

RankedTensorType withShape(Value v, ArrayRef<int64_t> shape) {
  return RankedTensorType::get(shape,
                               cast<RankedTensorType>(v.getType()).getElementType());
}

ArrayRef<int64_t> shapeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}

class Partitioner {
public:
  Partitioner(ModuleOp module, func::FuncOp func, const PartitionOptions &o,
              PartitionStrategy *strategy)
      : module(module), func(func), dp(o.dp), tp(o.tp),
        microbatches(o.microbatches), sp(o.sp), explain(o.explain),
        strategy(strategy), builder(func.getContext()) {
    // With pipeline parallelism the grid is pp x dp x tp (pp slowest in the
    // rank numbering, tp fastest: tp groups stay within a node).
    int16_t first = o.pp > 1 ? 1 : 0;
    dpAxis = first;
    tpAxis = first + 1;
  }

  LogicalResult run();

private:
  LogicalResult partitionBlock(Block &block);
  LogicalResult partitionOp(Operation *op);
  LogicalResult partitionLinear(LinearOp op);
  LogicalResult partitionCrossEntropy(CrossEntropyOp op);
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
  int64_t dp, tp, microbatches;
  bool sp, explain;
  /// Grid axes of dp and tp (after pp when the plan has one).
  int16_t dpAxis = 0, tpAxis = 1;
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
  SmallVector<Operation *> lossOps;
};

LogicalResult Partitioner::shardParam(Operation *user, Value param,
                                      ParamShard shard) {
  if (!isParam(param))
    return user->emitOpError()
           << "expects its weight to be a model parameter (a function "
              "argument with 'tfm.param') to shard it over tp";
  ArrayRef<int64_t> shape = shapeOf(param);
  int64_t size = shard.paddedSize ? shard.paddedSize : shape[shard.dim];
  if (size % (tp * shard.parts) != 0) {
    InFlightDiagnostic diag = user->emitOpError()
                              << "cannot split dim " << shard.dim << " ("
                              << size << ") of its weight over tp=" << tp
                              << ": ";
    if (shard.parts > 1 && size % shard.parts == 0)
      diag << "each of its " << shard.parts << " fused blocks of "
           << size / shard.parts << " is split, and " << size / shard.parts;
    else
      diag << size;
    diag << " is not divisible by " << tp;
    return diag;
  }
  if (wholeUses.contains(param))
    return user->emitOpError()
           << "shards a parameter that another op uses whole (e.g. a tied "
              "embedding that is not vocab-parallel)";
  auto [it, inserted] = paramShards.try_emplace(param, shard);
  if (!inserted && (it->second.dim != shard.dim || it->second.parts != shard.parts ||
                    it->second.paddedSize != shard.paddedSize))
    return user->emitOpError() << "uses a parameter already sharded on dim "
                               << it->second.dim << " (" << it->second.parts
                               << " parts) on dim " << shard.dim;
  return success();
}

LogicalResult Partitioner::partitionLinear(LinearOp op) {
  Value x = op.getInput();
  Layout in = layouts.lookup(x);
  bool inOut = op.getLayout() == WeightLayout::in_out;
  int64_t out = op.getOutFeatures();
  SmallVector<int64_t> resultShape(shapeOf(x).drop_back());
  LinearRule rule = LinearRule::Default;
  if (strategy && tp > 1) {
    FailureOr<LinearRule> chosen = strategy->linearRule(op, in.sharded);
    if (failed(chosen))
      return failure();
    rule = *chosen;
    bool needsWhole = rule == LinearRule::Replicate ||
                      rule == LinearRule::ColumnParallel;
    if ((needsWhole && (in.sharded || in.seqSplit)) ||
        (rule == LinearRule::RowParallel && !in.sharded))
      return op.emitOpError()
             << "strategy '" << strategy->name() << "' asks for a "
             << (rule == LinearRule::Replicate        ? "replicated"
                 : rule == LinearRule::ColumnParallel ? "column-parallel"
                                                      : "row-parallel")
             << " linear, but its input is "
             << (in.sharded ? "split over tp" : "whole");
  }
  if (tp > 1 && rule == LinearRule::Replicate &&
      failed(useWhole(op, op.getWeight())))
    return failure();
  if (tp == 1 || rule == LinearRule::Replicate) {
    resultShape.push_back(out);
    op.getResult().setType(withShape(op.getResult(), resultShape));
    if (tp > 1)
      note(op, "replicated (strategy '" + strategy->name() + "')");
    return success();
  }
  if (!in.sharded) {
    // Column-parallel: split the output features. A fused projection that is
    // immediately split into equal pieces (GPT-2 c_attn = q|k|v) is split per
    // piece so every rank holds its heads of each.
    int64_t parts = 1;
    if (op.getResult().hasOneUse())
      if (auto split = dyn_cast<SplitOp>(*op.getResult().getUsers().begin()))
        if (static_cast<int64_t>(split.getAxis()) == op.getResult().getType().getRank() - 1 &&
            llvm::all_equal(split.getResultTypes()))
          parts = split.getNumResults();
    // The LM head (feeding the cross-entropy) is vocab-parallel: its vocab
    // is padded to a multiple of tp when needed.
    // So is a head returning logits from an inference entry point (the
    // logits are all-gathered at the return).
    bool lmHead = op.getResult().hasOneUse() &&
                  (isa<CrossEntropyOp>(*op.getResult().getUsers().begin()) ||
                   (inference &&
                    isa<func::ReturnOp>(*op.getResult().getUsers().begin())));
    int64_t padded = lmHead && out % tp != 0 ? paddedVocab(out, tp) : 0;
    if (padded && op.getBias())
      return op.emitOpError() << "pads the vocab (" << out << ") to " << padded
                              << " for tp=" << tp
                              << ", which is not supported with a bias";
    if (failed(shardParam(op, op.getWeight(), {inOut ? 1 : 0, parts, padded})))
      return failure();
    if (padded) {
      vocabSize = out;
      out = padded;
    }
    if (Value bias = op.getBias())
      if (failed(shardParam(op, bias, {0, parts})))
        return failure();
    if (in.seqSplit) {
      // Sequence parallelism: gather the sequence instead of Megatron's `f`
      // (its backward is the matching reduce-scatter).
      op.getInputMutable().assign(allGatherSeq(op, x));
      resultShape[kSeqDim] *= tp;
    } else {
      // Megatron's `f`: the replicated input enters the tp region; its
      // gradient is all-reduced over tp in the backward pass.
      auto [it, inserted] = tpCopies.try_emplace(x, Value());
      if (inserted) {
        builder.setInsertionPoint(op);
        it->second = TpCopyOp::create(builder, op.getLoc(), x,
                                      builder.getStringAttr("tp"));
        layouts[it->second] = {};
      }
      op.getInputMutable().assign(it->second);
    }
    resultShape.push_back(out / tp);
    op.getResult().setType(withShape(op.getResult(), resultShape));
    layouts[op.getResult()] = {true, parts};
    note(op, "column-parallel (weight split on its " + Twine(out) +
                 " output features" +
                 (parts > 1 ? " in " + Twine(parts) + " parts" : Twine()) +
                 " over tp=" + Twine(tp) + ")");
    return success();
  }
  if (in.parts != 1)
    return op.emitOpError()
           << "reads a tensor split over tp in " << in.parts
           << " parts; only a single-part split can feed a row-parallel linear";
  // Row-parallel: split the input features, sum the partial results, then add
  // the bias once.
  if (failed(shardParam(op, op.getWeight(), {inOut ? 0 : 1, 1})))
    return failure();
  resultShape.push_back(out);
  op.getResult().setType(withShape(op.getResult(), resultShape));
  Value bias = op.getBias();
  op.getBiasMutable().clear();
  Value reduced;
  if (sp) {
    FailureOr<Value> scattered = reduceScatterSeq(op, op.getResult());
    if (failed(scattered))
      return failure();
    reduced = *scattered;
  } else {
    reduced = allReduce(op, op.getResult(), tpAxis);
  }
  if (bias) {
    builder.setInsertionPointAfterValue(reduced);
    auto add = BiasAddOp::create(builder, op.getLoc(), reduced.getType(),
                                 reduced, bias);
    reduced.replaceAllUsesExcept(add.getResult(), add);
    layouts[add.getResult()] = layouts.lookup(reduced);
    if (sp)
      markSequenceParallelGrad(bias);
  }
  note(op, "row-parallel (weight split on its " + Twine(op.getInFeatures()) +
               " input features over tp=" + Twine(tp) + "), then " +
               (sp ? "reduce-scatter over the sequence" : "all-reduce over tp") +
               (bias ? " and the bias" : ""));
  return success();
}

LogicalResult Partitioner::partitionCrossEntropy(CrossEntropyOp op) {
  Value logits = op.getLogits();
  Layout layout = layouts.lookup(logits);
  Value loss = op.getLoss();
  if (layout.sharded) {
    if (layout.parts != 1)
      return op.emitOpError() << "expects logits split over tp in one part";
    // Megatron's vocab-parallel cross-entropy: three row-sized all-reduces.
    Location loc = op.getLoc();
    builder.setInsertionPoint(op);
    auto rows = withShape(logits, shapeOf(logits).drop_back());
    auto max = ReduceMaxOp::create(builder, loc, rows, logits);
    Value globalMax = allReduce(max, max.getResult(), tpAxis,
                                shard::ReductionKind::Max);
    builder.setInsertionPoint(op);
    auto partial = CrossEntropyPartialOp::create(
        builder, loc, TypeRange{rows, rows}, logits, op.getLabels(), globalMax,
        builder.getStringAttr("tp"));
    if (vocabSize) // padded vocab: mask the padding columns
      partial->setAttr("vocab_size", builder.getI64IntegerAttr(vocabSize));
    Value sumExp = allReduce(partial, partial.getSumExp(), tpAxis);
    Value target = allReduce(sumExp.getDefiningOp(), partial.getTarget(), tpAxis);
    builder.setInsertionPointAfterValue(target);
    auto fin = CrossEntropyFinalizeOp::create(builder, loc, loss.getType(),
                                              globalMax, sumExp, target,
                                              op.getReductionAttr());
    loss.replaceAllUsesWith(fin.getLoss());
    note(op, "vocab-parallel cross-entropy (all-reduce max, sum-exp and "
             "target logit over tp; no logits all-gather)");
    op.erase();
    loss = fin.getLoss();
  }
  if (dp > 1 || microbatches > 1) {
    // Each dp rank holds the mean over its rows of one micro-batch; the step
    // loss is the mean over all rows: all-reduce over dp, divide by
    // dp x microbatches (the pipeline sums the micro-batches' losses).
    Operation *producer = loss.getDefiningOp();
    bool isMean = true;
    if (auto ce = dyn_cast<CrossEntropyOp>(producer))
      isMean = ce.getReduction() == Reduction::mean;
    else if (auto fin = dyn_cast<CrossEntropyFinalizeOp>(producer))
      isMean = fin.getReduction() == Reduction::mean;
    Value summed = dp > 1 ? allReduce(producer, loss, dpAxis) : loss;
    if (isMean) {
      builder.setInsertionPointAfterValue(summed);
      auto scale = ScaleOp::create(builder, producer->getLoc(), summed,
                                   builder.getF64FloatAttr(1.0 / (dp * microbatches)));
      summed.replaceAllUsesExcept(scale.getResult(), scale);
    }
    std::string divided =
        !isMean ? ""
        : microbatches == 1
            ? " and divided by dp"
            : " and divided by dp x microbatches (" +
                  std::to_string(dp * microbatches) + ")";
    note(producer, "loss all-reduced over dp=" + Twine(dp) + divided);
  }
  return success();
}

LogicalResult Partitioner::partitionOp(Operation *op) {
  auto sameAs = [&](Value result, Value operand) {
    result.setType(operand.getType());
    layouts[result] = layouts.lookup(operand);
  };
  auto requireReplicated = [&](Value v, StringRef what) -> LogicalResult {
    if (!layouts.lookup(v).sharded)
      return success();
    return op->emitOpError() << "cannot take a tensor split over tp as its "
                             << what << "; the partitioner has no rule for it";
  };
  auto localHeads = [&](Operation *at, int64_t heads,
                        StringRef what) -> FailureOr<int64_t> {
    if (heads % tp != 0)
      return at->emitOpError() << "cannot split " << heads << " " << what
                               << " over tp=" << tp
                               << (what == "kv heads"
                                       ? " (replicating kv heads when tp "
                                         "exceeds them is not supported)"
                                       : ""),
             failure();
    return heads / tp;
  };
  // An attention (over the sequence or the KV cache) on its rank's heads.
  auto localizeAttention = [&](auto a, const Twine &what) -> LogicalResult {
    FailureOr<int64_t> heads = localHeads(a, a.getNumHeads(), "heads");
    if (failed(heads))
      return failure();
    FailureOr<int64_t> kv = localHeads(a, a.getNumKvHeads(), "kv heads");
    if (failed(kv))
      return failure();
    a.setNumHeads(*heads);
    a.setNumKvHeads(*kv);
    note(a, what + " on " + Twine(*heads) + " local heads (" + Twine(*kv) +
                " kv heads) per tp rank");
    return success();
  };

  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      .Case([&](EmbeddingOp e) -> LogicalResult {
        // The ids are already local (inputs and position ids are batch-split).
        SmallVector<int64_t> shape(shapeOf(e.getIds()));
        shape.push_back(shapeOf(e.getTable())[1]);
        e.getResult().setType(withShape(e.getResult(), shape));
        layouts[e.getResult()] = {false, 1, layouts.lookup(e.getIds()).seqSplit};
        if (layouts.lookup(e.getIds()).seqSplit)
          markSequenceParallelGrad(e.getTable());
        auto ids = dyn_cast<BlockArgument>(e.getIds());
        bool tokens = ids && func.getArgAttr(ids.getArgNumber(),
                                             TfmDialect::kInputAttrName);
        if (tp == 1)
          return success();
        if (!tokens || (strategy && !strategy->vocabParallelEmbedding()))
          return useWhole(e, e.getTable());
        int64_t vocab = shapeOf(e.getTable())[0];
        if (failed(shardParam(e, e.getTable(),
                              {0, 1, vocab % tp ? paddedVocab(vocab, tp) : 0})))
          return failure();
        e.setShardAxisAttr(builder.getStringAttr("tp"));
        if (sp) {
          if (failed(reduceScatterSeq(e, e.getResult())))
            return failure();
        } else {
          allReduce(e, e.getResult(), tpAxis);
        }
        note(e, "vocab-parallel embedding (table rows split over tp=" +
                    Twine(tp) + ", masked lookup, " +
                    (sp ? "reduce-scatter over the sequence)" : "all-reduce)"));
        return success();
      })
      .Case([&](PositionIdsOp p) -> LogicalResult {
        auto type = batchSplit(p, p.getResult(), shapeOf(p.getResult()));
        if (failed(type))
          return failure();
        if (!sp) {
          p.getResult().setType(*type);
          return success();
        }
        // Sequence parallel: this rank's positions start at its block.
        SmallVector<int64_t> shape(type->getShape());
        if (shape[kSeqDim] % tp != 0)
          return p.emitOpError() << "cannot split the sequence ("
                                 << shape[kSeqDim] << ") over tp=" << tp
                                 << " for sequence parallelism";
        shape[kSeqDim] /= tp;
        p.getResult().setType(withShape(p.getResult(), shape));
        p->setAttr("shard_axis", builder.getStringAttr("tp"));
        layouts[p.getResult()] = {false, 1, true};
        return success();
      })
      .Case([&](LinearOp l) { return partitionLinear(l); })
      .Case([&](SplitOp s) -> LogicalResult {
        Layout in = layouts.lookup(s.getInput());
        int64_t axis = static_cast<int64_t>(s.getAxis());
        int64_t rank = s.getInput().getType().getRank();
        if (in.sharded && (axis != rank - 1 ||
                           static_cast<int64_t>(s.getNumResults()) != in.parts))
          return s.emitOpError()
                 << "splits a tensor held as " << in.parts
                 << " tp-split part(s) into " << s.getNumResults()
                 << " pieces along axis " << axis
                 << "; only a split into exactly those parts is supported";
        for (Value r : s.getResults()) {
          SmallVector<int64_t> shape(shapeOf(s.getInput()));
          shape[axis] = shapeOf(r)[axis] / (in.sharded ? tp : 1);
          r.setType(withShape(r, shape));
          layouts[r] = {in.sharded, 1};
        }
        return success();
      })
      .Case([&](AttentionOp a) -> LogicalResult {
        for (Value v : {a.getQuery(), a.getKey(), a.getValue()})
          if (layouts.lookup(v).sharded != layouts.lookup(a.getQuery()).sharded)
            return a.emitOpError() << "mixes tp-split and replicated q/k/v";
        sameAs(a.getResult(), a.getQuery());
        if (!layouts.lookup(a.getQuery()).sharded)
          return success();
        // Head-aligned splits: the projections were split on heads * head_dim
        // features, so heads must divide too.
        return localizeAttention(a, "attention");
      })
      .Case([&](KvCacheWriteOp w) -> LogicalResult {
        // The cache is split like the keys/values written into it: by kv
        // heads over tp (set up in run()), sequences over dp.
        if (layouts.lookup(w.getValue()).sharded !=
            layouts.lookup(w.getCache()).sharded)
          return w.emitOpError()
                 << "writes " << (layouts.lookup(w.getValue()).sharded
                                      ? "tp-split keys/values into a whole cache"
                                      : "whole keys/values into a tp-split cache")
                 << "; the cache is split by kv heads exactly when the "
                    "projections are";
        sameAs(w.getResult(), w.getCache());
        return success();
      })
      .Case([&](CacheAttentionOp a) -> LogicalResult {
        bool sharded = layouts.lookup(a.getQuery()).sharded;
        if (layouts.lookup(a.getKeyCache()).sharded != sharded ||
            layouts.lookup(a.getValueCache()).sharded != sharded)
          return a.emitOpError() << "mixes tp-split and replicated query/cache";
        sameAs(a.getResult(), a.getQuery());
        if (!sharded)
          return success();
        return localizeAttention(a, "attention over the KV cache");
      })
      .Case([&](LastTokenOp l) -> LogicalResult {
        if (failed(requireReplicated(l.getInput(), "input")))
          return failure();
        if (layouts.lookup(l.getInput()).seqSplit)
          return l.emitOpError() << "cannot take a sequence-parallel tensor";
        auto type = batchSplit(l, l.getResult(), shapeOf(l.getResult()));
        if (failed(type))
          return failure();
        l.getResult().setType(*type);
        return success();
      })
      .Case<RopeOp, RopeAtOp>([&](auto r) -> LogicalResult {
        sameAs(r.getResult(), r.getInput());
        if (!layouts.lookup(r.getInput()).sharded)
          return success();
        FailureOr<int64_t> heads = localHeads(r, r.getNumHeads(), "heads");
        if (failed(heads))
          return failure();
        r.setNumHeads(*heads);
        return success();
      })
      .Case<GeluOp, SiluOp, ScaleOp, TpCopyOp>([&](Operation *u) {
        sameAs(u->getResult(0), u->getOperand(0));
        return success();
      })
      .Case<AddOp, MulOp>([&](Operation *b) -> LogicalResult {
        if (layouts.lookup(b->getOperand(0)).sharded !=
                layouts.lookup(b->getOperand(1)).sharded ||
            layouts.lookup(b->getOperand(0)).seqSplit !=
                layouts.lookup(b->getOperand(1)).seqSplit ||
            b->getOperand(0).getType() != b->getOperand(1).getType())
          return b->emitOpError()
                 << "combines operands with different tp layouts";
        sameAs(b->getResult(0), b->getOperand(0));
        return success();
      })
      .Case<LayerNormOp, RMSNormOp, SoftmaxOp>([&](Operation *n) -> LogicalResult {
        if (failed(requireReplicated(n->getOperand(0), "input")))
          return failure();
        sameAs(n->getResult(0), n->getOperand(0));
        if (layouts.lookup(n->getOperand(0)).seqSplit)
          for (Value weight : n->getOperands().drop_front())
            markSequenceParallelGrad(weight);
        return success();
      })
      .Case([&](CrossEntropyOp c) { return partitionCrossEntropy(c); })
      .Case<ReshapeOp, MatmulOp, TransposeOp>([&](Operation *o) -> LogicalResult {
        for (Value v : o->getOperands()) {
          if (failed(requireReplicated(v, "operand")))
            return failure();
          if (layouts.lookup(v).seqSplit)
            return o->emitOpError() << "cannot take a sequence-parallel tensor";
        }
        if (auto t = dyn_cast<TransposeOp>(o);
            t && dp > 1 && t.getPermutation()[0] != 0)
          return t.emitOpError() << "moves the batch dimension, which cannot "
                                    "be split over dp";
        auto type = batchSplit(o, o->getResult(0), shapeOf(o->getResult(0)));
        if (failed(type))
          return failure();
        o->getResult(0).setType(*type);
        return success();
      })
      .Case([&](LayerOp l) -> LogicalResult {
        Block &body = l.getBody().front();
        if (failed(partitionBlock(body)))
          return failure();
        auto yield = cast<YieldOp>(body.getTerminator());
        for (auto [result, value] : llvm::zip(l.getResults(), yield.getValues()))
          sameAs(result, value);
        return success();
      })
      .Case([&](func::ReturnOp r) -> LogicalResult {
        for (OpOperand &operand : r->getOpOperands()) {
          Value v = operand.get();
          Layout layout = layouts.lookup(v);
          if (!inference && (layout.sharded || layout.seqSplit))
            return r.emitOpError()
                   << "returns a tensor split over tp (e.g. logits); gathering "
                      "returned tensors is supported for inference entry "
                      "points only, return the loss";
          if (layout.seqSplit || (layout.sharded && layout.parts != 1))
            return r.emitOpError()
                   << "returns a tensor split over tp in a way that cannot be "
                      "gathered (sequence-parallel or in several parts)";
          if (!layout.sharded)
            continue;
          // Vocab-parallel logits: all-gathered along the vocab (padded to
          // a multiple of tp; the runtime ignores the padding columns).
          SmallVector<int64_t> shape(shapeOf(v));
          int64_t last = static_cast<int64_t>(shape.size()) - 1;
          shape[last] *= tp;
          builder.setInsertionPoint(r);
          auto ag = shard::AllGatherOp::create(
              builder, r.getLoc(), withShape(v, shape), kGridName,
              ArrayRef<int16_t>{tpAxis}, v, APInt(64, last));
          operand.set(ag.getResult());
          note(r, "returned tensor all-gathered over tp along dim " +
                      Twine(last));
        }
        return success();
      })
      .Case<YieldOp>([](Operation *) { return success(); })
      .Default([&](Operation *o) {
        return o->emitOpError() << "cannot be partitioned: "
                                << (isa<shard::ShardDialect>(o->getDialect())
                                        ? "the model is already partitioned"
                                        : "no partitioning rule for this op");
      });
}

LogicalResult Partitioner::partitionBlock(Block &block) {
  SmallVector<Operation *> ops;
  for (Operation &op : block)
    ops.push_back(&op);
  for (Operation *op : ops)
    if (failed(partitionOp(op)))
      return failure();
  return success();
}

LogicalResult Partitioner::run() {
  Block &entry = func.getBody().front();
  // Per-step inputs: the batch is split over dp.
  for (BlockArgument arg : entry.getArguments()) {
    unsigned i = arg.getArgNumber();
    if (!func.getArgAttr(i, TfmDialect::kInputAttrName))
      continue;
    auto type = batchSplit(func, arg, shapeOf(arg));
    if (failed(type))
      return func.emitOpError()
             << "cannot split input #" << i << " of batch " << shapeOf(arg)[0]
             << " over dp=" << dp;
    arg.setType(*type);
  }
  for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
    inference |= static_cast<bool>(func.getArgAttr(i, TfmDialect::kStateAttrName));
  // Resident state (KV caches [batch, kv_heads, max_seq, head_dim]): the
  // sequences split over dp, the kv heads over tp (like the k/v projections).
  Builder ab(func.getContext());
  SmallVector<std::pair<unsigned, NamedAttrList>> stateAttrs;
  for (BlockArgument arg : entry.getArguments()) {
    unsigned i = arg.getArgNumber();
    if (!func.getArgAttr(i, TfmDialect::kStateAttrName))
      continue;
    SmallVector<int64_t> global(shapeOf(arg));
    auto type = batchSplit(func, arg, global);
    if (failed(type))
      return func.emitOpError()
             << "cannot split state #" << i << " of batch " << global[0]
             << " over dp=" << dp;
    SmallVector<int64_t> local(type->getShape());
    if (tp > 1) {
      if (local.size() != 4 || local[1] % tp != 0)
        return func.emitOpError()
               << "cannot split the kv heads of cache #" << i << " ("
               << (local.size() == 4 ? local[1] : 0) << ") over tp=" << tp;
      local[1] /= tp;
      layouts[arg] = {true, 1};
    }
    arg.setType(withShape(arg, local));
    NamedAttrList attrs(func.getArgAttrDict(i));
    attrs.set("llmir.global_shape", ab.getDenseI64ArrayAttr(global));
    SmallVector<NamedAttribute> rule = {
        ab.getNamedAttr("axis", ab.getStringAttr("dp")),
        ab.getNamedAttr("dim", ab.getI64IntegerAttr(0))};
    if (tp > 1)
      rule = {ab.getNamedAttr("axis", ab.getStrArrayAttr({"dp", "tp"})),
              ab.getNamedAttr("dim", ab.getDenseI64ArrayAttr({0, 1}))};
    attrs.set("llmir.shard", ab.getDictionaryAttr(rule));
    stateAttrs.push_back({i, attrs});
  }
  if (failed(partitionBlock(entry)))
    return failure();

  // Parameters take their local shapes; the slicing rule goes to the runtime.
  // All argument attributes are rebuilt once (setArgAttr per argument would
  // rebuild the whole array each time: quadratic in the parameter count).
  Builder b(func.getContext());
  SmallVector<NamedAttrList> argAttrs;
  for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
    argAttrs.emplace_back(func.getArgAttrDict(i));
  for (auto &[value, shard] : paramShards) {
    auto arg = cast<BlockArgument>(value);
    SmallVector<int64_t> global(shapeOf(arg)), local(global);
    local[shard.dim] = (shard.paddedSize ? shard.paddedSize : local[shard.dim]) / tp;
    arg.setType(withShape(arg, local));
    NamedAttrList &attrs = argAttrs[arg.getArgNumber()];
    attrs.set("llmir.global_shape", b.getDenseI64ArrayAttr(global));
    SmallVector<NamedAttribute> rule = {
        b.getNamedAttr("axis", b.getStringAttr("tp")),
        b.getNamedAttr("dim", b.getI64IntegerAttr(shard.dim)),
        b.getNamedAttr("parts", b.getI64IntegerAttr(shard.parts))};
    if (shard.paddedSize)
      rule.push_back(b.getNamedAttr("padded_size",
                                    b.getI64IntegerAttr(shard.paddedSize)));
    attrs.set("llmir.shard", b.getDictionaryAttr(rule));
  }
  for (auto &[arg, axis] : gradSums)
    argAttrs[arg].set("llmir.grad_sum", b.getStringAttr(axis));
  for (auto &[arg, attrs] : stateAttrs)
    argAttrs[arg] = attrs;
  SmallVector<DictionaryAttr> dicts;
  for (NamedAttrList &attrs : argAttrs)
    dicts.push_back(attrs.getDictionary(func.getContext()));
  func.setAllArgAttrs(dicts);
  func.setFunctionType(b.getFunctionType(
      entry.getArgumentTypes(), entry.getTerminator()->getOperandTypes()));
  if (explain)
    explainLayerCommunication();
  return success();
}

void Partitioner::explainLayerCommunication() {
  // Megatron's minimum per transformer block in the forward pass: with tp,
  // two all-reduces of the block's [batch, seq, hidden] output (attention and
  // MLP); with sequence parallelism, an all-gather and a reduce-scatter of it
  // instead of each all-reduce. Data parallelism needs none.
  for (auto layer : func.getBody().front().getOps<LayerOp>()) {
    Value out = layer.getNumResults() ? layer.getResult(0) : Value();
    int64_t act = 0;
    if (out) {
      auto t = cast<RankedTensorType>(out.getType());
      act = t.getNumElements() * t.getElementType().getIntOrFloatBitWidth() / 8;
      if (sp)
        act *= tp; // the block's output is a sequence block
    }
    int64_t ops = 0, bytes = 0;
    layer.walk([&](Operation *op) {
      if (isa<shard::AllReduceOp, shard::AllGatherOp, shard::ReduceScatterOp>(op)) {
        ++ops;
        auto t = cast<RankedTensorType>(op->getOperand(0).getType());
        bytes += t.getNumElements() * t.getElementType().getIntOrFloatBitWidth() / 8;
      }
    });
    int64_t minOps = tp == 1 ? 0 : (sp ? 4 : 2);
    int64_t minBytes = tp == 1 ? 0 : (sp ? 2 * act / tp + 2 * act : 2 * act);
    llvm::outs() << "explain: layer " << layer.getIndex() << " communication: "
                 << ops << " collectives, " << bytes
                 << " B per rank (Megatron minimum: " << minOps << ", "
                 << minBytes << " B)\n";
  }
}

/// Checks the plan before anything is rewritten.
LogicalResult validatePlan(ModuleOp module, const PartitionOptions &o) {
  auto positive = [&](StringRef name, int64_t v) -> LogicalResult {
    if (v >= 1)
      return success();
    return module.emitError() << "--llm-partition: " << name
                              << " must be >= 1, found " << v;
  };
  if (failed(positive("dp", o.dp)) || failed(positive("tp", o.tp)) ||
      failed(positive("pp", o.pp)) || failed(positive("vpp", o.vpp)) ||
      failed(positive("microbatches", o.microbatches)))
    return failure();
  if (o.zero != 0 && o.zero != 1)
    return module.emitError() << "--llm-partition: zero must be 0 or 1, found "
                              << o.zero;
  if (!llvm::is_contained({"gpipe", "1f1b", "interleaved", "zb-h1", "zb-v"},
                          o.schedule))
    return module.emitError()
           << "--llm-partition: unknown schedule '" << o.schedule
           << "' (expected gpipe, 1f1b, interleaved, zb-h1, zb-v)";
  if (o.schedule == "zb-v" && o.vpp > 2)
    return module.emitError() << "--llm-partition: schedule=zb-v runs 2 "
                                 "chunks per rank (vpp=2), found vpp="
                              << o.vpp;
  if (!llvm::is_contained({"none", "full", "selective"}, o.recompute))
    return module.emitError() << "--llm-partition: unknown recompute '"
                              << o.recompute
                              << "' (expected none, full, selective)";
  if (o.vpp > 1 && o.schedule != "interleaved" && o.schedule != "zb-v")
    return module.emitError()
           << "--llm-partition: vpp=" << o.vpp
           << " (virtual stages) needs schedule=interleaved, found '"
           << o.schedule << "'";
  if (o.schedule == "interleaved" && o.pp > 1 && o.vpp < 2)
    return module.emitError() << "--llm-partition: schedule=interleaved needs "
                                 "vpp >= 2 model chunks per rank";
  if (o.schedule == "interleaved" && o.pp > 1 &&
      (o.microbatches < o.pp || o.microbatches % o.pp != 0))
    return module.emitError()
           << "--llm-partition: schedule=interleaved needs microbatches to be "
              "a multiple of pp="
           << o.pp << ", found " << o.microbatches;
  if (o.pp == 1 && !o.layout.empty())
    return module.emitError() << "--llm-partition: layout= needs pp > 1";
  if (o.sp && o.tp == 1)
    return module.emitError()
           << "--llm-partition: sp=true needs tp > 1 (it splits the "
              "sequence over the tensor-parallel group)";
  if (module.lookupSymbol(kGridName))
    return module.emitError() << "--llm-partition: the module is already "
                                 "partitioned (it has @"
                              << kGridName << ")";
  return success();
}

struct LLMPartitionPass : public llmir::impl::LLMPartitionBase<LLMPartitionPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    PartitionOptions options;
    options.dp = dp;
    options.tp = tp;
    options.sp = sp;
    options.zero = zero;
    options.pp = pp;
    options.vpp = vpp;
    options.microbatches = microbatches;
    options.schedule = schedule;
    options.layout = layout;
    options.recompute = recompute;
    options.explain = explain;
    if (rules.empty()) {
      if (failed(partitionModule(module, options)))
        signalPassFailure();
      return;
    }
    auto buffer = llvm::MemoryBuffer::getFile(rules, /*IsText=*/true);
    if (!buffer) {
      module.emitError() << "--llm-partition: cannot read rules file '"
                         << rules << "': " << buffer.getError().message();
      return signalPassFailure();
    }
    auto strategy = RuleStrategy::parse((*buffer)->getBuffer(), rules);
    if (!strategy) {
      module.emitError() << "--llm-partition: "
                         << llvm::toString(strategy.takeError());
      return signalPassFailure();
    }
    if (failed(partitionModule(module, options, strategy->get())))
      return signalPassFailure();
    // Rules only decide tp splits; one that matched nothing is a typo.
    std::vector<std::string> unused = (*strategy)->unusedRules();
    if (tp > 1 && !unused.empty()) {
      module.emitError() << "--llm-partition: rules file '" << rules
                         << "': no linear weight matches "
                         << llvm::join(unused, ", ");
      signalPassFailure();
    }
  }
};

} // namespace

PartitionStrategy::~PartitionStrategy() = default;

LogicalResult llmir::partitionModule(ModuleOp module,
                                     const PartitionOptions &o,
                                     PartitionStrategy *strategy) {
  if (failed(validatePlan(module, o)))
    return failure();
  SmallVector<func::FuncOp> models = modelFunctions(module);
  std::string layout;
  // ZB-V always runs two chunks per rank (vpp=1 given means the default).
  int64_t vpp = o.schedule == "zb-v" ? 2 : o.vpp;
  int64_t numStages = o.pp * vpp;
  for (func::FuncOp func : models) {
    // Inference entry points (resident KV cache) pipeline one batch of
    // sequences per call: no micro-batches (they would slice the cache) and
    // one chunk per rank.
    if (numStages > 1 && (o.microbatches > 1 || vpp > 1))
      for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
        if (func.getArgAttr(i, TfmDialect::kStateAttrName))
          return func.emitOpError()
                 << "has resident state (a KV cache, inference); pipelined "
                    "inference runs microbatches=1 and vpp=1";
    Partitioner partitioner(module, func, o, strategy);
    if (failed(partitioner.run()))
      return failure();
    if (numStages == 1)
      continue;
    // Every entry point of a module (prefill, decode) gets the first one's
    // split, so each rank holds the same layers (and caches) in all of them.
    auto stages = pipeline::assignStages(func, numStages,
                                         layout.empty() ? StringRef(o.layout)
                                                        : StringRef(layout));
    if (failed(stages))
      return failure();
    layout = pipeline::formatLayout(*stages);
    if (o.explain) {
      double maxCost = 0;
      for (const pipeline::StageSpan &span : *stages)
        maxCost = std::max(maxCost, span.cost);
      for (auto [s, span] : llvm::enumerate(*stages)) {
        llvm::outs() << "explain: pipeline stage " << s << " (pp rank "
                     << (o.schedule == "zb-v" && int64_t(s) >= o.pp
                             ? 2 * o.pp - 1 - int64_t(s)
                             : int64_t(s) % o.pp)
                     << "):"
                     << (span.embedding ? " embedding," : "");
        if (span.numLayers == 1)
          llvm::outs() << " layer " << span.firstLayer;
        else if (span.numLayers)
          llvm::outs() << " layers " << span.firstLayer << "-"
                       << span.firstLayer + span.numLayers - 1;
        else
          llvm::outs() << " no layers";
        llvm::outs() << (span.head ? ", head" : "") << "; estimated cost "
                     << llvm::format("%.3g", span.cost) << " FLOP ("
                     << llvm::format("%.0f", maxCost ? 100 * span.cost / maxCost : 0)
                     << "% of the slowest stage)\n";
      }
    }
  }
  OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
  SmallVector<StringRef> axes = {"dp", "tp"};
  SmallVector<int64_t> sizes = {o.dp, o.tp};
  if (o.pp > 1) {
    axes.insert(axes.begin(), "pp");
    sizes.insert(sizes.begin(), o.pp);
  }
  shard::GridOp::create(b, module.getLoc(), b.getStringAttr(kGridName),
                        b.getDenseI64ArrayAttr(sizes));
  // vpp and layout only mean something with pipeline stages.
  setPlan(module,
          tfm::PlanAttr::get(
              module.getContext(),
              llvm::map_to_vector(axes, [&](StringRef a) { return b.getStringAttr(a); }),
              sizes, o.sp, o.zero, o.microbatches, o.schedule, o.recompute,
              numStages > 1 ? vpp : 1, numStages > 1 ? StringRef(layout) : "",
              strategy ? StringRef(strategy->name()) : ""));
  // A mixed-precision policy recorded before partitioning applies to the
  // per-rank form (the rules above read f32 parameters directly).
  return tfm::applyMixedPrecision(module);
}
