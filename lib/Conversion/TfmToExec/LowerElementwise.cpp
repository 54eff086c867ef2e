//===- LowerElementwise.cpp - elementwise ops and row reductions ----------===//
//
// One exec.kernel each: the binary/unary elementwise ops, their grads, the
// last-axis softmax, and the row reductions (reduce_max, sum_rows).
//
//===----------------------------------------------------------------------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

LogicalResult lowerOp(LoweringContext &c, AddOp op) {
  if (Operation *norm = c.fusedNormOf(op))
    return lowerFusedAddNorm(c, op, norm);
  c.kernel(op, "add", {c.in(op.getLhs()), c.in(op.getRhs())},
           {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, MulOp op) {
  c.kernel(op, "mul", {c.in(op.getLhs()), c.in(op.getRhs())},
           {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, ScaleOp op) {
  c.kernel(op, "scale", {c.in(op.getInput())}, {c.out(op.getResult())},
           {c.builder().getNamedAttr("factor", op.getFactorAttr())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, BiasAddOp op) {
  c.kernel(op, "bias_add", {c.in(op.getInput()), c.in(op.getBias())},
           {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, GeluOp op) {
  if (c.isFusedIntoGemm(op)) // emitted by the GEMM before it (LowerGemm.cpp)
    return success();
  c.kernel(op,
           op.getApproximate() == GeluApproximation::tanh ? "gelu_tanh"
                                                          : "gelu_exact",
           {c.in(op.getInput())}, {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, GeluGradOp op) {
  if (c.isFusedIntoGemm(op)) // emitted by the GEMM before it (LowerGemm.cpp)
    return success();
  c.kernel(op,
           op.getApproximate() == GeluApproximation::tanh ? "gelu_tanh_grad"
                                                          : "gelu_exact_grad",
           {c.in(op.getInput()), c.in(op.getDout())}, {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, SiluOp op) {
  c.kernel(op, "silu", {c.in(op.getInput())}, {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, SiluGradOp op) {
  c.kernel(op, "silu_grad", {c.in(op.getInput()), c.in(op.getDout())},
           {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, SoftmaxOp op) {
  int64_t rank = op.getInput().getType().getRank();
  int64_t axis = static_cast<int64_t>(op.getAxis());
  if (axis != -1 && axis != rank - 1)
    return op.emitOpError()
           << "softmax over axis " << axis
           << " cannot be lowered to exec yet (only the last axis)";
  c.kernel(op, "softmax", {c.in(op.getInput())}, {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, ReduceMaxOp op) {
  c.kernel(op, "reduce_max", {c.in(op.getInput())}, {c.out(op.getResult())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, SumRowsOp op) {
  if (c.isFusedIntoGemm(op)) // emitted by the GEMM before it (LowerGemm.cpp)
    return success();
  c.kernel(op, "sum_rows", {c.in(op.getInput())}, {c.out(op.getResult())});
  return success();
}

} // namespace llmir::lowering
