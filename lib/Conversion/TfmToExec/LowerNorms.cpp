//===- LowerNorms.cpp - layer_norm and rms_norm, forward and backward -----===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

LogicalResult lowerOp(LoweringContext &c, LayerNormOp op) {
  SmallVector<Value> ins = {c.in(op.getInput()), c.in(op.getGamma())};
  if (op.getBeta())
    ins.push_back(c.in(op.getBeta()));
  c.kernel(op, "layer_norm", ins, {c.out(op.getResult())},
           {c.builder().getNamedAttr("epsilon", op.getEpsilonAttr())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, LayerNormGradOp op) {
  c.kernel(op, "layer_norm_grad",
           {c.in(op.getInput()), c.in(op.getGamma()), c.in(op.getDout())},
           {c.out(op.getDinput()), c.out(op.getDgamma()), c.out(op.getDbeta())},
           {c.builder().getNamedAttr("epsilon", op.getEpsilonAttr())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RMSNormOp op) {
  c.kernel(op, "rms_norm", {c.in(op.getInput()), c.in(op.getGamma())},
           {c.out(op.getResult())},
           {c.builder().getNamedAttr("epsilon", op.getEpsilonAttr())});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, RMSNormGradOp op) {
  c.kernel(op, "rms_norm_grad",
           {c.in(op.getInput()), c.in(op.getGamma()), c.in(op.getDout())},
           {c.out(op.getDinput()), c.out(op.getDgamma())},
           {c.builder().getNamedAttr("epsilon", op.getEpsilonAttr())});
  return success();
}

} // namespace llmir::lowering
