//===- LowerInference.cpp - KV-cache ops, rope_at, last_token -------------===//
//
// The ops of prefill/decode entry points: they address the resident KV cache
// (exec.state) by per-sequence positions.
//
//===----------------------------------------------------------------------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

/// In place: the cache operand is the output (its result shares the buffer).
LogicalResult lowerOp(LoweringContext &c, KvCacheWriteOp op) {
  SmallVector<Value> ins = {c.in(op.getValue())};
  if (op.getPositions())
    ins.push_back(c.in(op.getPositions()));
  c.kernel(op, "kv_cache_write", ins, {c.in(op.getCache())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, CacheAttentionOp op) {
  OpBuilder &b = c.builder();
  c.kernel(
      op, "cache_attention",
      {c.in(op.getQuery()), c.in(op.getKeyCache()), c.in(op.getValueCache()),
       c.in(op.getPositions())},
      {c.out(op.getResult())},
      {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
       b.getNamedAttr("num_kv_heads", op.getNumKvHeadsAttr()),
       b.getNamedAttr("scale", b.getF64FloatAttr(op.getEffectiveScale()))});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RopeAtOp op) {
  OpBuilder &b = c.builder();
  c.kernel(op, "rope_at", {c.in(op.getInput()), c.in(op.getPositions())},
           {c.out(op.getResult())},
           {b.getNamedAttr("num_heads", op.getNumHeadsAttr()),
            b.getNamedAttr("theta", op.getThetaAttr())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, LastTokenOp op) {
  c.kernel(op, "last_token", {c.in(op.getInput()), c.in(op.getLengths())},
           {c.out(op.getResult())});
  return success();
}

} // namespace llmir::lowering
