//===- LowerGemm.cpp - linear and matmul to exec.gemm ---------------------===//
//
// Both become one exec.gemm over views: linear flattens its leading dims into
// rows, matmul keeps a batch dim (leading dims flattened) when it has one. A
// linear with a fused epilogue (fusableEpilogue) becomes gemm_bias_gelu or
// gemm_dgelu_bgrad instead (Kernels.def), and its epilogue ops emit nothing.
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

LoweringContext::GemmEpilogue fusableEpilogue(LinearOp linear,
                                              function_ref<bool(Value)> available) {
  LoweringContext::GemmEpilogue e;
  Value result = linear.getResult();
  if (linear.getBias()) {
    for (Operation *user : result.getUsers())
      if (auto gelu = dyn_cast<GeluOp>(user);
          gelu && gelu.getApproximate() == GeluApproximation::tanh) {
        e.activation = gelu;
        return e;
      }
    return e;
  }
  if (!result.hasOneUse())
    return e;
  auto grad = dyn_cast<GeluGradOp>(*result.getUsers().begin());
  if (!grad || grad.getApproximate() != GeluApproximation::tanh ||
      grad.getDout() != result || grad.getInput() == result ||
      !available(grad.getInput()) ||
      grad.getInput().getType() != result.getType())
    return e;
  e.activation = grad;
  for (Operation *user : grad.getResult().getUsers())
    if (auto sum = dyn_cast<SumRowsOp>(user)) {
      e.biasGrad = sum;
      break;
    }
  return e;
}

LogicalResult lowerOp(LoweringContext &c, LinearOp op) {
  ArrayRef<int64_t> shape = op.getInput().getType().getShape();
  int64_t rows = leading(shape, 1);
  Value x = c.view(c.in(op.getInput()), {rows, op.getInFeatures()});
  const bool transB = op.getLayout() == WeightLayout::out_in;
  if (LoweringContext::GemmEpilogue e = c.epilogueOf(op); e.activation) {
    auto rowsOf = [&](Value tensor) {
      return c.view(c.out(tensor), {rows, op.getOutFeatures()});
    };
    SmallVector<NamedAttribute> attrs;
    if (transB)
      attrs.push_back(c.builder().getNamedAttr("trans_b", c.builder().getBoolAttr(true)));
    if (auto grad = dyn_cast<GeluGradOp>(e.activation)) {
      SmallVector<Value> outs = {rowsOf(grad.getResult())};
      if (e.biasGrad)
        outs.push_back(c.out(e.biasGrad->getResult(0)));
      c.kernel(op, "gemm_dgelu_bgrad",
               {x, c.in(op.getWeight()), rowsOf(grad.getInput())}, outs, attrs);
      return success();
    }
    // The pre-activation is written only when something besides the GELU
    // reads it (the backward's gelu_grad).
    Value gelu = e.activation->getResult(0);
    SmallVector<Value> outs = {rowsOf(gelu)};
    if (!op.getResult().hasOneUse())
      outs.push_back(rowsOf(op.getResult()));
    c.kernel(op, "gemm_bias_gelu", {x, c.in(op.getWeight()), c.in(op.getBias())}, outs,
             attrs);
    return success();
  }
  Value y = c.view(c.out(op.getResult()), {rows, op.getOutFeatures()});
  Value bias = op.getBias() ? c.in(op.getBias()) : Value();
  exec::GemmOp::create(c.builder(), op.getLoc(), x, c.in(op.getWeight()), y,
                       bias,
                       /*trans_a=*/false,
                       /*trans_b=*/transB,
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
