//===- LowerOptimizer.cpp - the AdamW update and splat constants ----------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

/// In place on the parameter and its two moments (resident state planned by
/// the scheduler); with `shard_axis` (ZeRO-1) on this rank's chunk only.
LogicalResult lowerOp(LoweringContext &c, AdamWUpdateOp op) {
  OpBuilder &b = c.builder();
  auto [expAvg, expAvgSq] = c.adamMomentsOf(op);
  SmallVector<NamedAttribute> attrs = {
      b.getNamedAttr("beta1", op.getBeta1Attr()),
      b.getNamedAttr("beta2", op.getBeta2Attr()),
      b.getNamedAttr("eps", op.getEpsAttr()),
      b.getNamedAttr("decay", b.getBoolAttr(op.getDecay()))};
  if (op.getShardAxisAttr())
    attrs.push_back(b.getNamedAttr("shard_axis", op.getShardAxisAttr()));
  if (op.getLossScaled())
    attrs.push_back(b.getNamedAttr("loss_scaled", b.getBoolAttr(true)));
  SmallVector<Value, 2> ins = {c.in(op.getGrad())};
  if (op.getGradNormSq()) // clipping: the step's global squared gradient norm
    ins.push_back(c.in(op.getGradNormSq()));
  c.kernel(op, "adamw", ins, {c.in(op.getParam()), expAvg, expAvgSq}, attrs);
  return success();
}

namespace {
/// Whether `op` can join a multi-tensor update: f32 gradient and parameter,
/// the whole parameter (not a ZeRO chunk).
bool multiTensorCandidate(AdamWUpdateOp op) {
  auto f32 = [](Value v) { return cast<RankedTensorType>(v.getType()).getElementType().isF32(); };
  return !op.getShardAxisAttr() && f32(op.getGrad()) && f32(op.getParam());
}

/// Whether `a` and `b` share the step's scalars and norm.
bool sameStep(AdamWUpdateOp a, AdamWUpdateOp b) {
  return a.getBeta1Attr() == b.getBeta1Attr() && a.getBeta2Attr() == b.getBeta2Attr() &&
         a.getEpsAttr() == b.getEpsAttr() && a.getLossScaled() == b.getLossScaled() &&
         a.getGradNormSq() == b.getGradNormSq();
}
} // namespace

FailureOr<size_t> lowerAdamWUpdates(LoweringContext &c, ArrayRef<Operation *> ops) {
  auto first = cast<AdamWUpdateOp>(ops.front());
  c.waitForPending(first.getLoc(), first);
  SmallVector<AdamWUpdateOp> group = {first};
  if (multiTensorCandidate(first))
    for (Operation *op : ops.drop_front()) {
      auto next = dyn_cast<AdamWUpdateOp>(op);
      // A gradient still in flight (a later bucket) starts the next group,
      // so its wait does not delay the updates ready now.
      if (!next || !multiTensorCandidate(next) || !sameStep(first, next) ||
          c.lastPendingEventFor(next) >= 0)
        break;
      group.push_back(next);
    }
  if (group.size() == 1)
    return failed(lowerOp(c, first)) ? FailureOr<size_t>(failure()) : FailureOr<size_t>(1);
  OpBuilder &b = c.builder();
  SmallVector<Value> ins, outs;
  SmallVector<int64_t> decay;
  for (AdamWUpdateOp op : group) {
    auto [expAvg, expAvgSq] = c.adamMomentsOf(op);
    ins.push_back(c.in(op.getGrad()));
    outs.append({c.in(op.getParam()), expAvg, expAvgSq});
    decay.push_back(op.getDecay() ? 1 : 0);
  }
  if (first.getGradNormSq())
    ins.push_back(c.in(first.getGradNormSq()));
  SmallVector<NamedAttribute> attrs = {
      b.getNamedAttr("beta1", first.getBeta1Attr()),
      b.getNamedAttr("beta2", first.getBeta2Attr()),
      b.getNamedAttr("eps", first.getEpsAttr()),
      b.getNamedAttr("decay", b.getDenseI64ArrayAttr(decay))};
  if (first.getLossScaled())
    attrs.push_back(b.getNamedAttr("loss_scaled", b.getBoolAttr(true)));
  c.kernel(first, "adamw_multi", ins, outs, attrs);
  return group.size();
}

/// This gradient's partial sum of squares (clipping's global norm).
LogicalResult lowerOp(LoweringContext &c, GradNormSqOp op) {
  c.kernel(op, "grad_norm_sq", {c.in(op.getInput())}, {c.out(op.getResult())});
  return success();
}

/// The runtime's loss scale (f16 training's backward seed).
LogicalResult lowerOp(LoweringContext &c, LossScaleOp op) {
  c.kernel(op, "loss_scale", {}, {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, arith::ConstantOp op) {
  auto dense = dyn_cast<DenseElementsAttr>(op.getValue());
  if (!dense || !dense.isSplat() || !isa<FloatType>(dense.getElementType()))
    return op.emitOpError() << "only float splat constants can be "
                               "lowered to exec";
  OpBuilder &b = c.builder();
  double value = dense.getSplatValue<APFloat>().convertToDouble();
  c.kernel(op, "fill", {}, {c.out(op.getResult())},
           {b.getNamedAttr("value", b.getF64FloatAttr(value))});
  return success();
}

} // namespace llmir::lowering
