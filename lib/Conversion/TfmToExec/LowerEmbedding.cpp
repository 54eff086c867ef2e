//===- LowerEmbedding.cpp - embedding lookups and position ids ------------===//
//
// A `shard_axis` on these ops means a vocab- (embedding) or sequence-sharded
// (position_ids) tensor: the kernel offsets by this rank's index along it.
//
//===----------------------------------------------------------------------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

/// `shard_axis` if the op has one.
static SmallVector<NamedAttribute> shardAxisAttrs(OpBuilder &b,
                                                  Attribute shardAxis) {
  SmallVector<NamedAttribute> attrs;
  if (shardAxis)
    attrs.push_back(b.getNamedAttr("shard_axis", shardAxis));
  return attrs;
}

LogicalResult lowerOp(LoweringContext &c, EmbeddingOp op) {
  c.kernel(op, "embedding", {c.in(op.getIds()), c.in(op.getTable())},
           {c.out(op.getResult())},
           shardAxisAttrs(c.builder(), op.getShardAxisAttr()));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, EmbeddingGradOp op) {
  c.kernel(op, "embedding_grad", {c.in(op.getIds()), c.in(op.getDout())},
           {c.out(op.getResult())},
           shardAxisAttrs(c.builder(), op.getShardAxisAttr()));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, PositionIdsOp op) {
  OpBuilder &b = c.builder();
  SmallVector<NamedAttribute> attrs = {
      b.getNamedAttr("offset", op.getOffsetAttr())};
  if (Attribute axis = op->getAttr("shard_axis")) // sequence parallel
    attrs.push_back(b.getNamedAttr("shard_axis", axis));
  c.kernel(op, "position_ids", {}, {c.out(op.getResult())}, attrs);
  return success();
}

LogicalResult lowerOp(LoweringContext &c, CpSliceOp op) {
  c.kernel(op, "cp_slice", {c.in(op.getInput())}, {c.out(op.getResult())},
           {c.builder().getNamedAttr("cp_axis", op.getAxisAttr())});
  return success();
}

} // namespace llmir::lowering
