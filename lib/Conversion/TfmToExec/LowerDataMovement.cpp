//===- LowerDataMovement.cpp - views, transposes, splits, concats, casts --===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

// Views: the scheduler gave the result its operand's buffer, nothing to emit
// (so do concats and splits along contiguous memory, see placeViews).
LogicalResult lowerOp(LoweringContext &, ReshapeOp) { return success(); }
LogicalResult lowerOp(LoweringContext &, TpCopyOp) { return success(); }

LogicalResult lowerOp(LoweringContext &c, TransposeOp op) {
  c.kernel(op, "transpose", {c.in(op.getInput())}, {c.out(op.getResult())},
           {c.builder().getNamedAttr("permutation", op.getPermutationAttr())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, SplitOp op) {
  if (c.isView(op)) // the pieces are views of the input
    return success();
  OpBuilder &b = c.builder();
  int64_t offset = 0;
  int64_t axis = static_cast<int64_t>(op.getAxis());
  for (Value piece : op.getResults()) {
    c.kernel(op, "copy_slice", {c.in(op.getInput())}, {c.out(piece)},
             {b.getNamedAttr("axis", op.getAxisAttr()),
              b.getNamedAttr("offset", b.getI64IntegerAttr(offset))});
    offset += cast<RankedTensorType>(piece.getType()).getShape()[axis];
  }
  return success();
}

LogicalResult lowerOp(LoweringContext &c, ConcatOp op) {
  if (c.isView(op)) // the producers wrote the pieces in place
    return success();
  SmallVector<Value> ins;
  for (Value v : op.getInputs())
    ins.push_back(c.in(v));
  c.kernel(op, "concat", ins, {c.out(op.getResult())},
           {c.builder().getNamedAttr("axis", op.getAxisAttr())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, CastOp op) {
  c.kernel(op, "cast", {c.in(op.getInput())}, {c.out(op.getResult())});
  return success();
}

} // namespace llmir::lowering
