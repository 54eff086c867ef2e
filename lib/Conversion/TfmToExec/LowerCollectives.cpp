//===- LowerCollectives.cpp - shard collectives and pipeline messages -----===//
//
// Every collective and send/recv runs on the comm stream (1), fenced by
// events against the compute stream (0) (LoweringContext::onCommStream).
// Gathers/scatters along an inner dim go through the rank-major staging
// buffer the scheduler planned, and a transpose.
//
//===----------------------------------------------------------------------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

/// `local` (one rank's shard, split along `dim`) as [outer, ranks, block]
/// when `totalElements` are gathered over all ranks.
static SmallVector<int64_t, 3>
outerRanksBlock(ArrayRef<int64_t> local, int64_t dim, int64_t totalElements) {
  int64_t outer = 1, block = 1;
  for (int64_t i = 0; i < static_cast<int64_t>(local.size()); ++i)
    (i < dim ? outer : block) *= local[i];
  return {outer, totalElements / (outer * block), block};
}

/// The rank-major transpose between [outer, ranks, block] and
/// [ranks, outer, block] (its own inverse).
static void swapOuterAndRanks(LoweringContext &c, Operation *op, Value from,
                              ArrayRef<int64_t> fromShape, Value to,
                              ArrayRef<int64_t> toShape) {
  OpBuilder &b = c.builder();
  c.kernel(op, "transpose", {c.view(from, fromShape)}, {c.view(to, toShape)},
           {b.getNamedAttr("permutation", b.getDenseI64ArrayAttr({1, 0, 2}))});
}

LogicalResult lowerOp(LoweringContext &c, shard::AllReduceOp op) {
  FailureOr<StringRef> axis = c.axisName(op);
  if (failed(axis))
    return failure();
  Value result = c.out(op.getResult());
  Value input = c.in(op.getInput());
  if (input != result) // not reduced in place (the scheduler decides)
    c.kernel(op, "copy", {input}, {result});
  StringRef reduction;
  switch (op.getReduction()) {
  case shard::ReductionKind::Sum:
    reduction = "sum";
    break;
  case shard::ReductionKind::Max:
    reduction = "max";
    break;
  default:
    return op.emitOpError() << "only sum and max all-reduces can be "
                               "lowered to exec";
  }
  OpBuilder &b = c.builder();
  Location loc = op.getLoc();
  c.onCommStream(
      loc,
      [&] {
        exec::AllReduceOp::create(b, loc, result, *axis, reduction,
                                  /*stream=*/1);
      },
      op.getResult());
  return success();
}

LogicalResult lowerOp(LoweringContext &c, shard::ReduceScatterOp op) {
  FailureOr<StringRef> axis = c.axisName(op);
  if (failed(axis))
    return failure();
  Value input = c.in(op.getInput()), result = c.out(op.getResult());
  if (Value staged = c.stagingBufferOf(op)) {
    // [outer, ranks, block] -> rank-major [ranks, outer, block].
    SmallVector<int64_t, 3> shape = outerRanksBlock(
        op.getResult().getType().getShape(), op.getScatterAxis().getSExtValue(),
        op.getInput().getType().getNumElements());
    swapOuterAndRanks(c, op, input, shape, staged,
                      {shape[1], shape[0], shape[2]});
    input = staged;
  }
  Value flatIn =
      c.view(input, {cast<exec::BufferType>(input.getType()).getNumElements()});
  Value flatOut = c.view(result, {op.getResult().getType().getNumElements()});
  OpBuilder &b = c.builder();
  Location loc = op.getLoc();
  c.onCommStream(
      loc,
      [&] {
        exec::ReduceScatterOp::create(b, loc, flatIn, flatOut, *axis,
                                      /*stream=*/1);
      },
      op.getResult(), flatIn);
  return success();
}

LogicalResult lowerOp(LoweringContext &c, shard::AllGatherOp op) {
  FailureOr<StringRef> axis = c.axisName(op);
  if (failed(axis))
    return failure();
  Value input = c.in(op.getInput()), result = c.out(op.getResult());
  Value staged = c.stagingBufferOf(op);
  Value target = staged ? staged : result;
  Value flatIn = c.view(input, {op.getInput().getType().getNumElements()});
  Value flatOut = c.view(target, {op.getResult().getType().getNumElements()});
  OpBuilder &b = c.builder();
  Location loc = op.getLoc();
  // With a staging buffer the transpose below reads it right away.
  c.onCommStream(
      loc,
      [&] {
        exec::AllGatherOp::create(b, loc, flatIn, flatOut, *axis,
                                  /*stream=*/1);
      },
      staged ? Value() : op.getResult(), staged ? Value() : flatIn);
  if (staged) {
    // Rank-major [ranks, outer, block] -> [outer, ranks, block].
    SmallVector<int64_t, 3> shape = outerRanksBlock(
        op.getInput().getType().getShape(), op.getGatherAxis().getSExtValue(),
        op.getResult().getType().getNumElements());
    swapOuterAndRanks(c, op, target, {shape[1], shape[0], shape[2]}, result,
                      shape);
  }
  return success();
}

LogicalResult lowerOp(LoweringContext &c, SendOp op) {
  // Compute never waits for a send, only before it overwrites the memory
  // the send reads (the scheduler keeps that until the next comm op).
  Value input = c.in(op.getInput());
  OpBuilder &b = c.builder();
  Location loc = op.getLoc();
  c.onCommStream(
      loc,
      [&] {
        exec::SendOp::create(b, loc, input, op.getPeerStage(), op.getTag(),
                             /*stream=*/1);
      },
      Value(), input);
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RecvOp op) {
  Value result = c.out(op.getResult());
  OpBuilder &b = c.builder();
  Location loc = op.getLoc();
  c.onCommStream(
      loc,
      [&] {
        exec::RecvOp::create(b, loc, result, op.getPeerStage(), op.getTag(),
                             /*stream=*/1);
      },
      op.getResult());
  return success();
}

/// ZeRO-1: this rank's updated chunk of the parameter is copied out to the
/// staging buffer, then the chunks of all ranks are gathered back in place.
LogicalResult lowerOp(LoweringContext &c, ParamAllGatherOp op) {
  Value param = c.in(op.getParam());
  auto type = cast<exec::BufferType>(param.getType());
  Value flat = c.view(param, {type.getNumElements()});
  Value chunk = c.stagingBufferOf(op);
  OpBuilder &b = c.builder();
  c.kernel(op, "copy_chunk", {flat}, {chunk},
           {b.getNamedAttr("shard_axis", op.getAxisAttr())});
  Location loc = op.getLoc();
  c.onCommStream(
      loc,
      [&] {
        exec::AllGatherOp::create(b, loc, chunk, flat, op.getAxis(),
                                  /*stream=*/1);
      },
      op.getParam(), chunk);
  return success();
}

} // namespace llmir::lowering
