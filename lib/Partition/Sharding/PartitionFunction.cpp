//===- PartitionFunction.cpp - a partitioned function's signature ---------===//
//
// Splits the per-step inputs and resident KV caches over dp x micro-batches,
// runs the per-op rules over the body, then gives parameters their local
// shapes and records their slicing (`llmir.shard`) for the runtime.
//
//===----------------------------------------------------------------------===//

#include "Partitioner.h"

#include "llmir/runtime/ContextParallel.h"
#include "llmir/Dialect/Tfm/IR/ContextParallel.h"


using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;
using namespace llmir::partition;

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
  // Inference under cp: the prefill (it fills the caches from position 0)
  // splits the prompt like training splits the sequence; decode (it writes
  // the caches at given positions) runs replicated over cp on the full caches
  // the prefill left on every cp rank.
  bool decodes = false;
  func.walk([&](KvCacheWriteOp w) { decodes |= static_cast<bool>(w.getPositions()); });
  cpSplit = cp > 1 && !decodes;
  if (cpSplit && inference && failed(checkPromptWidthForCp()))
    return failure();
  // Context parallelism: every cp rank reads the whole [batch, seq] inputs
  // (small) and keeps its two zig-zag chunks of the sequence (per-sequence
  // inputs such as the prompt lengths stay whole).
  if (cpSplit)
    for (BlockArgument arg : entry.getArguments())
      if (func.getArgAttr(arg.getArgNumber(), TfmDialect::kInputAttrName) &&
          !(inference && shapeOf(arg).size() < 2) &&
          failed(sliceForCp(func, arg, /*atStart=*/true)))
        return failure();
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

LogicalResult Partitioner::sliceForCp(Operation *anchor, Value v, bool atStart) {
  SmallVector<int64_t> shape(shapeOf(v));
  if (shape.size() < 2 || shape[kSeqDim] % (2 * cp) != 0)
    return anchor->emitOpError()
           << "cannot split the sequence ("
           << (shape.size() < 2 ? 0 : shape[kSeqDim]) << ") into 2 x cp=" << cp
           << " equal chunks for context parallelism (each rank holds two)";
  shape[kSeqDim] /= cp;
  if (atStart) {
    // Right before the first user, so that a pipeline stage slices only the
    // inputs it reads (the labels on the last stage).
    Block &entry = func.getBody().front();
    Operation *first = nullptr;
    for (Operation *user : v.getUsers())
      if (Operation *top = entry.findAncestorOpInBlock(*user))
        if (!first || top->isBeforeInBlock(first))
          first = top;
    if (!first)
      return success(); // an unused input
    builder.setInsertionPoint(first);
  } else {
    builder.setInsertionPointAfter(anchor);
  }
  auto slice = CpSliceOp::create(builder, anchor->getLoc(), withShape(v, shape), v,
                                 builder.getStringAttr("cp"));
  v.replaceAllUsesExcept(slice.getResult(), slice);
  note(slice, "sequence split over cp=" + Twine(cp) + " in " + Twine(2 * cp) +
                  " zig-zag chunks of " + Twine(shape[kSeqDim] / 2));
  return success();
}

Value Partitioner::gatherSequenceOverCp(Operation *user, Value local) {
  if (Value gathered = cpGathers.lookup(local))
    return gathered; // K and V: one all-gather for the attention and the cache
  builder.setInsertionPoint(user);
  SmallVector<int64_t> shape(shapeOf(local));
  shape[kSeqDim] *= cp;
  auto ag = shard::AllGatherOp::create(builder, user->getLoc(), withShape(local, shape),
                                       kGridName, ArrayRef<int16_t>{cpAxis}, local,
                                       APInt(64, kSeqDim));
  layouts[ag.getResult()] = layouts.lookup(local);
  cpGathers[local] = ag.getResult();
  return ag.getResult();
}

LogicalResult Partitioner::checkPromptWidthForCp() {
  for (BlockArgument arg : func.getArguments()) {
    auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                  TfmDialect::kInputAttrName);
    if (!name || name.getValue() != "input_ids" || shapeOf(arg).size() != 2)
      continue;
    int64_t width = shapeOf(arg)[kSeqDim], chunks = 2 * cp;
    if (width % chunks == 0)
      return success();
    return func.emitOpError()
           << "prompt width " << width << " (llm-translate --prompt-len) is not a "
           << "multiple of 2 x cp=" << cp << ": the prefill splits it into "
           << chunks << " equal chunks; compile with --prompt-len "
           << (width + chunks - 1) / chunks * chunks
           << " (shorter prompts are padded at run time)";
  }
  return success();
}

Value Partitioner::sequenceInGlobalOrder(Operation *user, Value local) {
  // The all-gather concatenates the ranks' zig-zag chunks (rank 0's two, then
  // rank 1's, ...); chunk c of that order holds global chunk key(c) of a
  // one-position-per-chunk CpChunks.
  Value gathered = gatherSequenceOverCp(user, local);
  builder.setInsertionPoint(user);
  int64_t chunks = 2 * cp;
  SmallVector<int64_t> shape(shapeOf(gathered));
  shape[kSeqDim] /= chunks;
  SmallVector<Type> pieceTypes(chunks, withShape(gathered, shape));
  auto split = SplitOp::create(builder, user->getLoc(), pieceTypes, gathered,
                               builder.getI64IntegerAttr(kSeqDim));
  runtime::CpChunks order{/*rank=*/0, /*size=*/cp, /*chunk=*/1};
  SmallVector<Value> pieces(chunks);
  for (int64_t c = 0; c < chunks; ++c)
    pieces[order.key(c)] = split.getResult(c);
  auto concat = ConcatOp::create(builder, user->getLoc(), gathered.getType(), pieces,
                                 builder.getI64IntegerAttr(kSeqDim));
  layouts[concat.getResult()] = layouts.lookup(local);
  note(concat, "the sequence all-gathered over cp=" + Twine(cp) +
                   " back in global position order");
  return concat.getResult();
}

LogicalResult Partitioner::partitionAttentionCp(AttentionOp op) {
  op->setAttr(TfmDialect::kCpAxisAttrName, builder.getStringAttr("cp"));
  if (cpRing) {
    // K and V stay local; the exec lowering passes them around the cp ring.
    op->setAttr(kCpCommAttrName, builder.getStringAttr(kCpRing));
    note(op, "K and V passed around the cp=" + Twine(cp) +
                 " ring, partial attentions merged by log-sum-exp");
    return success();
  }
  // Each rank's queries attend to the whole sequence: K and V all-gathered
  // over cp along the sequence (the backward reduce-scatters dK and dV).
  for (OpOperand *operand : {&op.getKeyMutable(), &op.getValueMutable()})
    operand->set(gatherSequenceOverCp(op, operand->get()));
  note(op, "K and V all-gathered over cp=" + Twine(cp) +
               ", causal mask by global (zig-zag) positions");
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
    // Context parallelism: each attention's local K and V all-gathered (the
    // ring's sends are emitted by the exec lowering, not counted here).
    if (cp > 1 && !cpRing)
      layer.walk([&](AttentionOp att) {
        auto q = cast<RankedTensorType>(att.getQuery().getType());
        int64_t kv = q.getNumElements() / att.getNumHeads() * att.getNumKvHeads();
        minOps += 2;
        minBytes += 2 * kv * q.getElementType().getIntOrFloatBitWidth() / 8;
      });
    llvm::outs() << "explain: layer " << layer.getIndex() << " communication: "
                 << ops << " collectives, " << bytes
                 << " B per rank (" << (cp > 1 ? "analytic" : "Megatron")
                 << " minimum: " << minOps << ", "
                 << minBytes << " B)\n";
  }
}
