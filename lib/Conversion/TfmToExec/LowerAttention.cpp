//===- LowerAttention.cpp - attention and rope, forward and backward ------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

AttentionOp savedForwardOf(AttentionGradOp grad) {
  for (Operation *user : grad.getQuery().getUsers()) {
    auto fwd = dyn_cast<AttentionOp>(user);
    if (!fwd || fwd.getKey() != grad.getKey() || fwd.getValue() != grad.getValue() ||
        fwd.getNumHeads() != grad.getNumHeads() ||
        fwd.getNumKvHeads() != grad.getNumKvHeads() ||
        fwd.getCausal() != grad.getCausal() ||
        fwd.getEffectiveScale() != grad.getScale().convertToDouble())
      continue;
    if (llvm::any_of(fwd.getResult().getUsers(),
                     [](Operation *u) { return isa<shard::AllReduceOp>(u); }))
      return nullptr;
    return fwd;
  }
  return nullptr;
}

RankedTensorType lseTypeOf(AttentionOp op) {
  auto q = cast<RankedTensorType>(op.getQuery().getType());
  return RankedTensorType::get(
      {q.getDimSize(0), static_cast<int64_t>(op.getNumHeads()), q.getDimSize(1)},
                               Float32Type::get(op.getContext()));
}

static SmallVector<NamedAttribute> attentionAttrs(OpBuilder &b, IntegerAttr heads,
                                                  IntegerAttr kvHeads, double scale,
                                                  bool causal) {
  return {b.getNamedAttr("num_heads", heads), b.getNamedAttr("num_kv_heads", kvHeads),
          b.getNamedAttr("scale", b.getF64FloatAttr(scale)),
          b.getNamedAttr("causal", b.getBoolAttr(causal))};
}

/// `attrs` and the op's context-parallel axis, if it has one.
static SmallVector<NamedAttribute> withCpAxis(Operation *op,
                                              SmallVector<NamedAttribute> attrs) {
  if (Attribute cp = op->getAttr(TfmDialect::kCpAxisAttrName))
    attrs.push_back(NamedAttribute(TfmDialect::kCpAxisAttrName, cp));
  return attrs;
}

LogicalResult lowerOp(LoweringContext &c, AttentionOp op) {
  SmallVector<Value> outs = {c.out(op.getResult())};
  if (Value lse = c.savedLseOf(op)) // training: kept for attention_grad
    outs.push_back(lse);
  c.kernel(op, "attention",
           {c.in(op.getQuery()), c.in(op.getKey()), c.in(op.getValue())}, outs,
           withCpAxis(op, attentionAttrs(c.builder(), op.getNumHeadsAttr(),
                                         op.getNumKvHeadsAttr(), op.getEffectiveScale(),
                                         op.getCausal())));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, AttentionGradOp op) {
  SmallVector<Value> ins = {c.in(op.getQuery()), c.in(op.getKey()), c.in(op.getValue()),
                            c.in(op.getDout())};
  // The forward's output and log-sum-exp instead of recomputing the forward.
  if (AttentionOp fwd = savedForwardOf(op))
    if (Value lse = c.savedLseOf(fwd))
      ins.append({c.in(fwd.getResult()), lse});
  c.kernel(op, "attention_grad", ins,
           {c.out(op.getDquery()), c.out(op.getDkey()), c.out(op.getDvalue())},
           withCpAxis(op, attentionAttrs(c.builder(), op.getNumHeadsAttr(),
                                         op.getNumKvHeadsAttr(),
                                         op.getScale().convertToDouble(), op.getCausal())));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RopeOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "rope", {c.in(op.getInput())}, {c.out(op.getResult())},
           withCpAxis(op, {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
                           b.getNamedAttr("theta", op.getThetaAttr()),
                           b.getNamedAttr("offset", op.getOffsetAttr())}));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RopeGradOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "rope_grad", {c.in(op.getDout())}, {c.out(op.getResult())},
           withCpAxis(op, {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
                           b.getNamedAttr("theta", op.getThetaAttr()),
                           b.getNamedAttr("offset", op.getOffsetAttr())}));
  return success();
}

} // namespace llmir::lowering
