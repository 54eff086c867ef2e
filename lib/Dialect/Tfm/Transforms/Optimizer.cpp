//===- Optimizer.cpp - gradient synchronisation and AdamW -----------------===//

#include "llmir/Dialect/Tfm/Transforms/Optimizer.h"

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Shard/IR/ShardOps.h"

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

OptimizerBuilder::OptimizerBuilder(OpBuilder &b, ModuleOp module,
                                   func::FuncOp func,
                                   const OptimizerOptions &options)
    : b(b), module(module), func(func), options(options) {
  if (std::optional<PlanAxis> axis = lookupPlanAxis(module, "dp")) {
    dpAxis = axis->index;
    dp = axis->size;
  }
  tfm::PlanAttr plan = getPlan(module);
  zero = plan && plan.isZero1() && dp > 1;
  bucketed_ = dp > 1 && !zero;
}

Value OptimizerBuilder::reshape(Value v, ArrayRef<int64_t> shape, Location loc) {
  auto type = RankedTensorType::get(
      shape, cast<RankedTensorType>(v.getType()).getElementType());
  return ReshapeOp::create(b, loc, type, v);
}

void OptimizerBuilder::addToBucket(BlockArgument param, Value grad,
                                   Location loc) {
  bucket.push_back({param, grad});
  bucketFill += cast<RankedTensorType>(param.getType()).getNumElements() * 4;
  if (bucketFill >= options.bucketBytes)
    flushBucket(loc);
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
    Value narrow = CastOp::create(b, loc, wire, joined);
    reduced = shard::AllReduceOp::create(b, loc, wire, "grid",
                                         ArrayRef<int16_t>{dpAxis}, narrow);
  } else {
    reduced = shard::AllReduceOp::create(b, loc, bucketType, "grid",
                                         ArrayRef<int16_t>{dpAxis}, joined);
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

LogicalResult OptimizerBuilder::emitUpdates(
    ArrayRef<std::pair<BlockArgument, Value>> grads) {
  for (auto [param, raw] : grads) {
    // Bucketed gradients are already summed over dp (sums commute, so the
    // sequence-parallel sum over tp below can come after).
    if (bucketed_) {
      auto it = bucketOf.find(param);
      if (it != bucketOf.end())
        unpackBucket(reducedBuckets[it->second]);
    }
    Value grad = bucketed_ ? reducedGrads.lookup(param) : raw;
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
      if (n % dp != 0)
        return func.emitOpError()
               << "zero=1 needs every parameter's size to divide by dp=" << dp
               << "; parameter #" << param.getArgNumber() << " has " << n
               << " elements";
      Value flat = reshape(grad, {n}, loc);
      grad = shard::ReduceScatterOp::create(
          b, loc, RankedTensorType::get({n / dp}, type.getElementType()), "grid",
          ArrayRef<int16_t>{dpAxis}, flat, shard::ReductionKind::Sum,
          /*scatter_axis=*/APInt(64, 0));
      shardAxis = b.getStringAttr("dp");
    }
    AdamWUpdateOp::create(b, loc, param, grad, decay, b.getF64FloatAttr(0.9),
                          b.getF64FloatAttr(0.95), b.getF64FloatAttr(1e-8),
                          shardAxis);
    if (zero)
      ParamAllGatherOp::create(b, loc, param, shardAxis);
  }
  return success();
}
