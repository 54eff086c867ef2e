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
