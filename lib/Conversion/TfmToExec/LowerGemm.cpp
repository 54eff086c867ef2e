//===- LowerGemm.cpp - linear and matmul to exec.gemm ---------------------===//
//
// Both become one exec.gemm over views: linear flattens its leading dims into
// rows, matmul keeps a batch dim (leading dims flattened) when it has one.
//
//===----------------------------------------------------------------------===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

/// Product of `shape` without its last `keep` dims.
static int64_t leading(ArrayRef<int64_t> shape, size_t keep) {
  int64_t n = 1;
  for (int64_t d : shape.drop_back(keep))
    n *= d;
  return n;
}

LogicalResult lowerOp(LoweringContext &c, LinearOp op) {
  ArrayRef<int64_t> shape = op.getInput().getType().getShape();
  int64_t rows = leading(shape, 1);
  Value x = c.view(c.in(op.getInput()), {rows, op.getInFeatures()});
  Value y = c.view(c.out(op.getResult()), {rows, op.getOutFeatures()});
  Value bias = op.getBias() ? c.in(op.getBias()) : Value();
  exec::GemmOp::create(c.builder(), op.getLoc(), x, c.in(op.getWeight()), y,
                       bias,
                       /*trans_a=*/false,
                       /*trans_b=*/op.getLayout() == WeightLayout::out_in,
                       /*alpha=*/APFloat(1.0), /*beta=*/APFloat(0.0));
  return success();
}

LogicalResult lowerOp(LoweringContext &c, MatmulOp op) {
  auto as3d = [&](Value buffer, ArrayRef<int64_t> shape) {
    if (shape.size() == 2)
      return buffer;
    return c.view(buffer,
                  {leading(shape, 2), shape[shape.size() - 2], shape.back()});
  };
  Value lhs = as3d(c.in(op.getLhs()), op.getLhs().getType().getShape());
  Value rhs = as3d(c.in(op.getRhs()), op.getRhs().getType().getShape());
  Value result =
      as3d(c.out(op.getResult()), op.getResult().getType().getShape());
  exec::GemmOp::create(c.builder(), op.getLoc(), lhs, rhs, result, Value(),
                       op.getTransposeA(), op.getTransposeB(), APFloat(1.0),
                       APFloat(0.0));
  return success();
}

} // namespace llmir::lowering
