//===- LowerAttention.cpp - attention and rope, forward and backward ------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

LogicalResult lowerOp(LoweringContext &c, AttentionOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "attention",
           {c.in(op.getQuery()), c.in(op.getKey()), c.in(op.getValue())},
           {c.out(op.getResult())},
           {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
            b.getNamedAttr("num_kv_heads", op.getNumKvHeadsAttr()),
            b.getNamedAttr("scale", b.getF64FloatAttr(op.getEffectiveScale())),
            b.getNamedAttr("causal", b.getBoolAttr(op.getCausal()))});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, AttentionGradOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "attention_grad",
           {c.in(op.getQuery()), c.in(op.getKey()), c.in(op.getValue()),
            c.in(op.getDout())},
           {c.out(op.getDquery()), c.out(op.getDkey()), c.out(op.getDvalue())},
           {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
            b.getNamedAttr("num_kv_heads", op.getNumKvHeadsAttr()),
            b.getNamedAttr("scale", op.getScaleAttr()),
            b.getNamedAttr("causal", b.getBoolAttr(op.getCausal()))});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RopeOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "rope", {c.in(op.getInput())}, {c.out(op.getResult())},
           {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
            b.getNamedAttr("theta", op.getThetaAttr()),
            b.getNamedAttr("offset", op.getOffsetAttr())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RopeGradOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "rope_grad", {c.in(op.getDout())}, {c.out(op.getResult())},
           {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
            b.getNamedAttr("theta", op.getThetaAttr()),
            b.getNamedAttr("offset", op.getOffsetAttr())});
  return success();
}

} // namespace llmir::lowering
