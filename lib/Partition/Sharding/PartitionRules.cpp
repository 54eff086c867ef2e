//===- PartitionRules.cpp - per-op partitioning rules ---------------------===//
//
// Each op's local form follows from its operands' layouts over the `tp`
// axis by Megatron-LM's rules (column/row-parallel linears, head-split
// attention, vocab-parallel embedding and cross-entropy, sequence
// parallelism); the collectives it needs are inserted right there.
//
//===----------------------------------------------------------------------===//

#include "Partitioner.h"

#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;
using namespace llmir::partition;

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
  if (dp > 1 || microbatches > 1 || cp > 1) {
    // Each dp rank holds the mean over its rows of one micro-batch; the step
    // loss is the mean over all rows: all-reduce over dp, divide by
    // dp x microbatches (the pipeline sums the micro-batches' losses).
    Operation *producer = loss.getDefiningOp();
    bool isMean = true;
    if (auto ce = dyn_cast<CrossEntropyOp>(producer))
      isMean = ce.getReduction() == Reduction::mean;
    else if (auto fin = dyn_cast<CrossEntropyFinalizeOp>(producer))
      isMean = fin.getReduction() == Reduction::mean;
    // Context parallelism: each cp rank holds the mean over its tokens;
    // they are summed over cp like the dp ranks' rows.
    Value summed = cp > 1 ? allReduce(producer, loss, cpAxis) : loss;
    if (dp > 1)
      summed = allReduce(summed.getDefiningOp(), summed, dpAxis);
    if (isMean) {
      builder.setInsertionPointAfterValue(summed);
      auto scale = ScaleOp::create(builder, producer->getLoc(), summed,
                                   builder.getF64FloatAttr(1.0 / (dp * cp * microbatches)));
      summed.replaceAllUsesExcept(scale.getResult(), scale);
    }
    std::string divided =
        !isMean ? ""
        : cp > 1 ? " and divided by dp x cp x microbatches (" +
                       std::to_string(dp * cp * microbatches) + ")"
        : microbatches == 1
            ? " and divided by dp"
            : " and divided by dp x microbatches (" +
                  std::to_string(dp * microbatches) + ")";
    std::string over = "dp=" + std::to_string(dp);
    if (cp > 1)
      over = "cp=" + std::to_string(cp) + (dp > 1 ? ", then " + over + "," : "");
    note(producer, "loss all-reduced over " + over + divided);
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
        Value idsIn = e.getIds();
        if (auto slice = idsIn.getDefiningOp<CpSliceOp>()) // cp: the tokens' chunks
          idsIn = slice.getInput();
        auto ids = dyn_cast<BlockArgument>(idsIn);
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
          // Context parallelism: the global positions of the local tokens.
          return cpSplit ? sliceForCp(p, p.getResult(), /*atStart=*/false)
                        : success();
        }
        // Sequence parallel: this rank's positions start at its block. With
        // cp the block is one of the cp rank's zig-zag rows, whose positions
        // the position_ids kernel does not know (RoPE models need none).
        if (cp > 1)
          return p.emitOpError()
                 << "learned position embeddings with cp=" << cp
                 << " and sp=true are not supported (each tp rank's block of "
                    "the cp rank's zig-zag positions); use sp=false";
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
        if (cpSplit && failed(partitionAttentionCp(a)))
          return failure();
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
        // cp prefill: every cp rank's cache gets the whole prompt.
        if (cpSplit)
          w.getValueMutable().assign(sequenceInGlobalOrder(w, w.getValue()));
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
        // cp prefill: the last prompt token may sit on any cp rank.
        if (cpSplit)
          l.getInputMutable().assign(sequenceInGlobalOrder(l, l.getInput()));
        auto type = batchSplit(l, l.getResult(), shapeOf(l.getResult()));
        if (failed(type))
          return failure();
        l.getResult().setType(*type);
        return success();
      })
      .Case<RopeOp, RopeAtOp>([&](auto r) -> LogicalResult {
        sameAs(r.getResult(), r.getInput());
        if (cpSplit) // rotations at the global positions of the local tokens
          r->setAttr(TfmDialect::kCpAxisAttrName, builder.getStringAttr("cp"));
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
        if (cpSplit)
          return o->emitOpError() << "has no context-parallel rule (cp=" << cp
                                  << " splits the sequence)";
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
      .Case<YieldOp, CpSliceOp>([](Operation *) { return success(); })
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
