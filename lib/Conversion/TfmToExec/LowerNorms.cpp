//===- LowerNorms.cpp - norms (alone or after a residual add), backward ---===//

#include "LoweringContext.h"

using namespace mlir;
using namespace llmir::tfm;

namespace llmir::lowering {

Operation *fusableNorm(AddOp add) {
  // Defined in the add's block or one around it (a layer's body reads the
  // function's parameters), before the add.
  auto availableAtAdd = [&](Value v) {
    Operation *at = v.getParentBlock()->findAncestorOpInBlock(*add);
    Operation *def = v.getDefiningOp();
    return at && (!def || def->isBeforeInBlock(at));
  };
  // The first such norm in program order (a recomputed layer may normalize
  // the same sum again much later: fusing that one would keep its output
  // alive from the add on).
  Operation *first = nullptr;
  for (Operation *user : add.getResult().getUsers()) {
    if (user->getBlock() != add->getBlock() || (first && first->isBeforeInBlock(user)))
      continue;
    if (auto ln = dyn_cast<LayerNormOp>(user);
        ln && ln.getInput() == add.getResult() && availableAtAdd(ln.getGamma()) &&
        (!ln.getBeta() || availableAtAdd(ln.getBeta())))
      first = ln;
    if (auto rms = dyn_cast<RMSNormOp>(user);
        rms && rms.getInput() == add.getResult() && availableAtAdd(rms.getGamma()))
      first = rms;
  }
  return first;
}

/// add_layer_norm / add_rms_norm at `add`: the sum and its norm in one kernel.
LogicalResult lowerFusedAddNorm(LoweringContext &c, AddOp add, Operation *norm) {
  SmallVector<Value> ins = {c.in(add.getLhs()), c.in(add.getRhs())};
  StringRef name = "add_rms_norm";
  FloatAttr eps;
  if (auto ln = dyn_cast<LayerNormOp>(norm)) {
    name = "add_layer_norm";
    ins.push_back(c.in(ln.getGamma()));
    if (ln.getBeta())
      ins.push_back(c.in(ln.getBeta()));
    eps = ln.getEpsilonAttr();
  } else {
    auto rms = cast<RMSNormOp>(norm);
    ins.push_back(c.in(rms.getGamma()));
    eps = rms.getEpsilonAttr();
  }
  c.waitForPending(add.getLoc(), norm); // the norm's weights, read here already
  c.kernel(add, name, ins, {c.out(add.getResult()), c.out(norm->getResult(0))},
           {c.builder().getNamedAttr("epsilon", eps)});
  return success();
}

LogicalResult lowerOp(LoweringContext &c, LayerNormOp op) {
  if (c.isFusedNorm(op)) // emitted with its residual add
    return success();
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
  if (c.isFusedNorm(op)) // emitted with its residual add
    return success();
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
