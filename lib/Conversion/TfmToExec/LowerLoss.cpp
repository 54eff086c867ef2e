//===- LowerLoss.cpp - the cross-entropy family ---------------------------===//
//
// cross_entropy and its grad over whole logits, and the vocab-parallel split
// (partial over this rank's vocab shard, finalize after the all-reduces); the
// grads write their dlogits over dead logits (overwrittenLogits).
//
//===----------------------------------------------------------------------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

static NamedAttribute reductionAttr(OpBuilder &b, Reduction reduction) {
  return b.getNamedAttr("reduction",
                        b.getStringAttr(stringifyReduction(reduction)));
}

/// `shard_axis`, and `vocab_size` when the logits carry padded vocab columns.
static SmallVector<NamedAttribute> vocabShardAttrs(OpBuilder &b, Operation *op,
                                                   Attribute shardAxis) {
  SmallVector<NamedAttribute> attrs = {b.getNamedAttr("shard_axis", shardAxis)};
  if (Attribute vocab = op->getAttr("vocab_size"))
    attrs.push_back(b.getNamedAttr("vocab_size", vocab));
  return attrs;
}

Value overwrittenLogits(Operation *grad) {
  if (!isa<CrossEntropyGradOp, CrossEntropyPartialGradOp>(grad))
    return {};
  Value logits = grad->getOperand(0);
  Operation *def = logits.getDefiningOp();
  // Views share their bytes, the comm stream writes received ones: only a
  // compute op's own result. Mixed-precision (bf16/f16) logits only: f32
  // programs keep their plans (and the cost model's estimate of them).
  auto type = cast<RankedTensorType>(logits.getType());
  if (type.getElementType().isF32() || type != grad->getResult(0).getType() || !def ||
      def->getBlock() != grad->getBlock() || !isa<TfmDialect>(def->getDialect()) ||
      isa<ReshapeOp, TpCopyOp, LayerOp, RecvOp, ParamAllGatherOp>(def))
    return {};
  for (Operation *user : logits.getUsers())
    if (user != grad &&
        (!isa<CrossEntropyOp, CrossEntropyPartialOp, ReduceMaxOp>(user) ||
         user->getBlock() != grad->getBlock() || !user->isBeforeInBlock(grad)))
      return {};
  return logits;
}

LogicalResult lowerOp(LoweringContext &c, CrossEntropyOp op) {
  c.kernel(op, "cross_entropy", {c.in(op.getLogits()), c.in(op.getLabels())},
           {c.out(op.getLoss())},
           {reductionAttr(c.builder(), op.getReduction())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, CrossEntropyGradOp op) {
  c.kernel(op, "cross_entropy_grad",
           {c.in(op.getLogits()), c.in(op.getLabels()), c.in(op.getDloss())},
           {c.out(op.getResult())},
           {reductionAttr(c.builder(), op.getReduction())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, CrossEntropyPartialOp op) {
  c.kernel(op, "cross_entropy_partial",
           {c.in(op.getLogits()), c.in(op.getLabels()), c.in(op.getMax())},
           {c.out(op.getSumExp()), c.out(op.getTarget())},
           vocabShardAttrs(c.builder(), op, op.getShardAxisAttr()));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, CrossEntropyPartialGradOp op) {
  c.kernel(op, "cross_entropy_partial_grad",
           {c.in(op.getLogits()), c.in(op.getLabels()), c.in(op.getMax()),
            c.in(op.getDsumExp()), c.in(op.getDtarget())},
           {c.out(op.getResult())},
           vocabShardAttrs(c.builder(), op, op.getShardAxisAttr()));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, CrossEntropyFinalizeOp op) {
  c.kernel(op, "cross_entropy_finalize",
           {c.in(op.getMax()), c.in(op.getSumExp()), c.in(op.getTarget())},
           {c.out(op.getLoss())},
           {reductionAttr(c.builder(), op.getReduction())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, CrossEntropyFinalizeGradOp op) {
  c.kernel(op, "cross_entropy_finalize_grad",
           {c.in(op.getSumExp()), c.in(op.getDloss())},
           {c.out(op.getDsumExp()), c.out(op.getDtarget())},
           {reductionAttr(c.builder(), op.getReduction())});
  return success();
}

} // namespace llmir::lowering
