//===- Optimizer.cpp - gradient synchronisation and AdamW -----------------===//

#include "llmir/Dialect/Tfm/Transforms/Optimizer.h"

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

OptimizerBuilder::OptimizerBuilder(OpBuilder &b, ModuleOp module,
                                   func::FuncOp func,
                                   const OptimizerOptions &options)
    : b(b), module(module), func(func), options(options) {
  // The overflow check of a loss-scaled update reads the global norm.
  if (options.lossScaled)
    this->options.gradNorm = true;
  if (std::optional<PlanAxis> axis = lookupPlanAxis(module, "dp")) {
    dpAxis = axis->index;
    dp = axis->size;
  }
  if (std::optional<PlanAxis> axis = lookupPlanAxis(module, "cp")) {
    cpAxis = axis->index;
    cp = axis->size;
  }
  tfm::PlanAttr plan = getPlan(module);
  std::optional<ZeroAxis> zeroAxis = lookupZeroAxis(module);
  zero = plan && plan.shardsOptimizer() && zeroAxis;
  if (zero) {
    zeroAxisName = zeroAxis->name;
    zeroAxisIndex = zeroAxis->axis.index;
    zeroRanks = zeroAxis->axis.size;
  }
  zeroStage = zero ? plan.getZero() : 0;
  // ZeRO-3 reduces gradients as ZeRO-2 does (its parameters are made
  // sharded later, at lowering: tfm::shardParametersOverDp).
  zeroGradients = zero && zeroStage >= 2;
  scatterPerMicrobatch = zeroStage == 3 && plan.getZero3Gather() == "microbatch";
  // ZeRO-2 reduce-scatters each gradient where it becomes final, like the
  // buckets of plain dp (and cp), instead of keeping it whole until the
  // optimizer.
  bucketed_ = zeroGradients || (!zero && (dp > 1 || cp > 1));
}

Value OptimizerBuilder::reshape(Value v, ArrayRef<int64_t> shape, Location loc) {
  auto type = RankedTensorType::get(
      shape, cast<RankedTensorType>(v.getType()).getElementType());
  return ReshapeOp::create(b, loc, type, v);
}

Value OptimizerBuilder::reduceScatterChunk(Value grad, Location loc) {
  auto type = cast<RankedTensorType>(grad.getType());
  int64_t n = type.getNumElements();
  Value flat = reshape(grad, {n}, loc);
  auto chunkType = RankedTensorType::get({n / zeroRanks}, type.getElementType());
  Value chunk = shard::ReduceScatterOp::create(
      b, loc, chunkType, "grid", ArrayRef<int16_t>{zeroAxisIndex}, flat,
      shard::ReductionKind::Sum, /*scatter_axis=*/APInt(64, 0));
  // Sharded over dp, the cp ranks' partial sums of the chunk still differ.
  if (cp > 1 && zeroAxisIndex != cpAxis)
    chunk = shard::AllReduceOp::create(b, loc, chunkType, "grid",
                                       ArrayRef<int16_t>{cpAxis}, chunk);
  return chunk;
}

Value OptimizerBuilder::reduceOverDataRanks(Value flat, Location loc) {
  auto type = cast<RankedTensorType>(flat.getType());
  auto allReduce = [&](Value v, int16_t axis) -> Value {
    return shard::AllReduceOp::create(b, loc, v.getType(), "grid",
                                      ArrayRef<int16_t>{axis}, v);
  };
  if (cp == 1)
    return allReduce(flat, dpAxis);
  if (dp == 1)
    return allReduce(flat, cpAxis);
  int64_t n = type.getNumElements();
  if (n % cp != 0) // no even chunks: two all-reduces
    return allReduce(allReduce(flat, cpAxis), dpAxis);
  auto chunk = RankedTensorType::get({n / cp}, type.getElementType());
  Value mine = shard::ReduceScatterOp::create(b, loc, chunk, "grid",
                                              ArrayRef<int16_t>{cpAxis}, flat,
                                              shard::ReductionKind::Sum,
                                              /*scatter_axis=*/APInt(64, 0));
  return shard::AllGatherOp::create(b, loc, type, "grid", ArrayRef<int16_t>{cpAxis},
                                    allReduce(mine, dpAxis), APInt(64, 0));
}

void OptimizerBuilder::addToBucket(BlockArgument param, Value grad,
                                   Location loc) {
  reductionOrder.try_emplace(param, reductionOrder.size());
  if (zeroGradients) { // ZeRO-2: this rank's chunk now; the full gradient dies
    int64_t n = cast<RankedTensorType>(param.getType()).getNumElements();
    if (n % zeroRanks == 0) {
      reducedGrads[param] = reduceScatterChunk(grad, loc);
      return;
    } // emitUpdates reports the size
  }
  bucket.push_back({param, grad});
  bucketFill += cast<RankedTensorType>(param.getType()).getNumElements() * 4;
  if (bucketFill >= options.bucketBytes)
    flushBucket(loc);
}

Value OptimizerBuilder::reduceScatterMicrobatch(Value grad, Location loc) {
  if (!scatterPerMicrobatch ||
      cast<RankedTensorType>(grad.getType()).getNumElements() % zeroRanks != 0)
    return Value();
  return reduceScatterChunk(grad, loc);
}

void OptimizerBuilder::addReducedChunk(BlockArgument param, Value chunk) {
  reductionOrder.try_emplace(param, reductionOrder.size());
  reducedGrads[param] = chunk;
}

void OptimizerBuilder::flushBucket(Location loc) {
  if (bucket.empty())
    return;
  SmallVector<Value> flat;
  SmallVector<Type> pieceTypes;
  int64_t total = 0;
  Type elementType;
  for (auto [param, grad] : bucket) {
    auto type = cast<RankedTensorType>(param.getType());
    elementType = type.getElementType();
    flat.push_back(reshape(grad, {type.getNumElements()}, loc));
    pieceTypes.push_back(flat.back().getType());
    total += type.getNumElements();
  }
  auto bucketType = RankedTensorType::get({total}, elementType);
  Value joined = flat.size() == 1
                     ? flat.front()
                     : ConcatOp::create(b, loc, bucketType, flat,
                                        b.getI64IntegerAttr(0))
                           .getResult();
  Value reduced;
  if (options.bf16Comm) {
    // Gradient compression: bf16 on the wire, fp32 accumulation in the
    // runtime's reduction, fp32 again for the optimizer (at unpacking).
    auto wire = RankedTensorType::get({total}, b.getBF16Type());
    reduced = reduceOverDataRanks(CastOp::create(b, loc, wire, joined), loc);
  } else {
    reduced = reduceOverDataRanks(joined, loc);
  }
  ReducedBucket done{reduced, {}, loc};
  for (auto [param, grad] : bucket) {
    bucketOf[param] = reducedBuckets.size();
    done.params.push_back(param);
  }
  reducedBuckets.push_back(std::move(done));
  bucket.clear();
  bucketFill = 0;
}

void OptimizerBuilder::unpackBucket(ReducedBucket &rb) {
  if (rb.unpacked)
    return;
  rb.unpacked = true;
  Location loc = rb.loc;
  Value reduced = rb.reduced;
  auto wireType = cast<RankedTensorType>(reduced.getType());
  Type elementType =
      cast<RankedTensorType>(rb.params.front().getType()).getElementType();
  if (wireType.getElementType() != elementType)
    reduced = CastOp::create(b, loc, wireType.clone(elementType), reduced);
  SmallVector<Type> pieceTypes;
  for (BlockArgument param : rb.params)
    pieceTypes.push_back(RankedTensorType::get(
        {cast<RankedTensorType>(param.getType()).getNumElements()}, elementType));
  SmallVector<Value> pieces;
  if (rb.params.size() == 1)
    pieces.push_back(reduced);
  else
    llvm::append_range(pieces, SplitOp::create(b, loc, pieceTypes, reduced,
                                               b.getI64IntegerAttr(0))
                                   .getResults());
  for (auto [param, piece] : llvm::zip(rb.params, pieces))
    reducedGrads[param] = ReshapeOp::create(b, loc, param.getType(), piece).getResult();
}

void OptimizerBuilder::emitUpdate(const Update &u, Value normSq) {
  Location loc = u.param.getLoc();
  AdamWUpdateOp::create(b, loc, u.param, u.grad, normSq, u.decay,
                        b.getF64FloatAttr(0.9), b.getF64FloatAttr(0.95),
                        b.getF64FloatAttr(1e-8), u.shardAxis,
                        options.lossScaled ? b.getUnitAttr() : UnitAttr());
  if (u.shardAxis)
    ParamAllGatherOp::create(b, loc, u.param, u.shardAxis);
}

Value OptimizerBuilder::emitGradNormSq(ArrayRef<Update> updates) {
  // Each element counts once: a gradient sharded over some grid axes (tp
  // slices, ZeRO-1 chunks over dp) has its partial summed over exactly those
  // axes; a replicated one (layer norms under tp, anything under plain dp)
  // is already the same on every rank of the other axes. Partials are
  // grouped by their axes so that each group needs one all-reduce per axis.
  Location loc = func.getLoc();
  auto scalar = RankedTensorType::get({1}, b.getF32Type());
  auto add = [&](Value acc, Value v) {
    return acc ? AddOp::create(b, loc, acc, v).getResult() : v;
  };
  SmallVector<std::pair<SmallVector<int16_t>, Value>> partials;
  for (const Update &u : updates) {
    if (llvm::is_contained(normExcluded, u.param))
      continue;
    SmallVector<int16_t> axes;
    if (u.shardAxis)
      axes.push_back(zeroAxisIndex);
    if (auto rule = func.getArgAttrOfType<DictionaryAttr>(u.param.getArgNumber(),
                                                          "llmir.shard"))
      if (auto name = rule.getAs<StringAttr>("axis"))
        if (std::optional<PlanAxis> axis = lookupPlanAxis(module, name.getValue());
            axis && axis->size > 1)
          axes.push_back(axis->index);
    llvm::sort(axes);
    Value sq = GradNormSqOp::create(b, u.param.getLoc(), scalar, u.grad);
    auto *group = llvm::find_if(partials, [&](auto &p) { return p.first == axes; });
    if (group == partials.end())
      partials.push_back({axes, sq});
    else
      group->second = add(group->second, sq);
  }
  Value total;
  for (auto &[axes, partial] : partials) {
    Value sum = partial;
    for (int16_t axis : axes)
      sum = shard::AllReduceOp::create(b, loc, scalar, "grid",
                                       ArrayRef<int16_t>{axis}, sum);
    total = add(total, sum);
  }
  // Pipeline stages hold different parameters: sum their norms too (every
  // stage takes part, even one without trainable parameters).
  std::optional<PlanAxis> pp = lookupPlanAxis(module, "pp");
  if (!total || (pp && pp->size > 1)) {
    if (!total)
      total = arith::ConstantOp::create(
          b, loc, scalar,
          DenseElementsAttr::get(scalar, b.getFloatAttr(b.getF32Type(), 0.0)));
    if (pp && pp->size > 1)
      total = shard::AllReduceOp::create(b, loc, scalar, "grid",
                                         ArrayRef<int16_t>{pp->index}, total);
  }
  return total;
}

LogicalResult OptimizerBuilder::emitUpdates(
    ArrayRef<std::pair<BlockArgument, Value>> grads) {
  SmallVector<Update> ready;
  for (auto [param, raw] : grads) {
    // Bucketed gradients are already summed over dp (sums commute, so the
    // sequence-parallel sum over tp below can come after).
    if (bucketed_) {
      auto it = bucketOf.find(param);
      if (it != bucketOf.end())
        unpackBucket(reducedBuckets[it->second]);
    }
    // ZeRO-2's gradients arrive as this rank's chunk, already reduced;
    // plain dp's as the unpacked piece of their all-reduced bucket.
    bool chunked = zeroGradients && reducedGrads.count(param);
    Value grad = chunked || (bucketed_ && !zeroGradients)
                     ? reducedGrads.lookup(param)
                     : raw;
    if (!grad)
      return func.emitOpError() << "parameter #" << param.getArgNumber()
                                << " has no reduced gradient";
    Location loc = param.getLoc();
    auto type = cast<RankedTensorType>(param.getType());
    // Sequence parallelism: replicated parameters used on a sequence block
    // hold partial gradients; sum them over that axis first.
    if (auto axis = func.getArgAttrOfType<StringAttr>(param.getArgNumber(),
                                                      "llmir.grad_sum")) {
      std::optional<PlanAxis> index = lookupPlanAxis(module, axis.getValue());
      if (!index)
        return func.emitOpError() << "parameter #" << param.getArgNumber()
                                  << " sums its gradient over unknown axis '"
                                  << axis.getValue() << "'";
      grad = shard::AllReduceOp::create(b, loc, grad.getType(), "grid",
                                        ArrayRef<int16_t>{index->index}, grad);
    }
    UnitAttr decay = type.getRank() >= 2 ? b.getUnitAttr() : UnitAttr();
    StringAttr shardAxis;
    if (zero) {
      int64_t n = type.getNumElements();
      if (n % zeroRanks != 0)
        return func.emitOpError()
               << "zero=" << zeroStage << " needs every parameter's size to divide by "
               << zeroAxisName << "=" << zeroRanks << "; parameter #"
               << param.getArgNumber() << " has " << n << " elements";
      if (!chunked)
        grad = reduceScatterChunk(grad, loc);
      shardAxis = b.getStringAttr(zeroAxisName);
    }
    ready.push_back({param, grad, decay, shardAxis});
  }
  // Every collective above is issued before the first update, so each one
  // overlaps the updates before its reader (ZeRO-1: the reduce-scatter of
  // the next parameter runs during this one's AdamW); with the norm, every
  // update waits for the global norm anyway.
  Value normSq = options.gradNorm ? emitGradNormSq(ready) : Value();
  // Updates in the order the gradients' reductions were issued (the first
  // bucket first), so the compute stream waits for each bucket only when it
  // gets to it; the norm above keeps the parameter order (its sum's order).
  auto issued = [&](const Update &u) {
    auto it = reductionOrder.find(u.param);
    return it == reductionOrder.end() ? reductionOrder.size() : it->second;
  };
  llvm::stable_sort(ready, [&](const Update &x, const Update &y) {
    return issued(x) < issued(y);
  });
  for (const Update &update : ready)
    emitUpdate(update, normSq);
  return success();
}
