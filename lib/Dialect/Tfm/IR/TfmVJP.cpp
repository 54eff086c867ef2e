//===- TfmVJP.cpp - reverse-mode rules of the tfm ops ---------------------===//
//
// One VJPOpInterface::buildVJP per differentiable op. Backward computations
// that are not plain forward ops have their own ops (layer_norm_grad,
// attention_grad, ...), each with a CPU kernel.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/ContextParallel.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace llmir::tfm;

#include "llmir/Dialect/Tfm/IR/TfmInterfaces.cpp.inc"

namespace {

Value zerosLike(OpBuilder &b, Location loc, Value like) {
  auto type = cast<RankedTensorType>(like.getType());
  return arith::ConstantOp::create(
      b, loc, type,
      DenseElementsAttr::get(type, b.getFloatAttr(type.getElementType(), 0.0)));
}

Value reshapeTo(OpBuilder &b, Location loc, Value v, ArrayRef<int64_t> shape) {
  auto type = RankedTensorType::get(
      shape, cast<RankedTensorType>(v.getType()).getElementType());
  return ReshapeOp::create(b, loc, type, v);
}

} // namespace

LogicalResult EmbeddingOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                    const VJPContext &,
                                    SmallVectorImpl<Value> &grads) {
  grads[1] = EmbeddingGradOp::create(b, getLoc(), getTable().getType(), getIds(),
                                     dys[0], getShardAxisAttr());
  return success();
}

LogicalResult LinearOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                 const VJPContext &ctx,
                                 SmallVectorImpl<Value> &grads) {
  Location loc = getLoc();
  Value x = getInput(), w = getWeight(), dy = dys[0];
  bool inOut = getLayout() == WeightLayout::in_out;
  // dx = dy . W^T: a linear with the weight read the other way round.
  if (ctx.needsGrad(x))
    grads[0] = LinearOp::create(b, loc, x.getType(), dy, w, Value(),
                                inOut ? WeightLayout::out_in : WeightLayout::in_out);
  // dW = x^T dy ([in, out]) or dy^T x ([out, in]) over all tokens.
  int64_t in = getInFeatures(), out = getOutFeatures();
  int64_t tokens = getInput().getType().getNumElements() / in;
  Value x2 = reshapeTo(b, loc, x, {tokens, in});
  Value dy2 = reshapeTo(b, loc, dy, {tokens, out});
  grads[1] = inOut ? MatmulOp::create(b, loc, w.getType(), x2, dy2,
                                      /*transpose_a=*/true, false)
                   : MatmulOp::create(b, loc, w.getType(), dy2, x2,
                                      /*transpose_a=*/true, false);
  if (Value bias = getBias())
    grads[2] = SumRowsOp::create(b, loc, bias.getType(), dy);
  return success();
}

LogicalResult LayerNormOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                    const VJPContext &,
                                    SmallVectorImpl<Value> &grads) {
  auto g = LayerNormGradOp::create(
      b, getLoc(),
      TypeRange{getInput().getType(), getGamma().getType(), getGamma().getType()},
      getInput(), getGamma(), dys[0], getEpsilonAttr());
  grads[0] = g.getDinput();
  grads[1] = g.getDgamma();
  if (getBeta())
    grads[2] = g.getDbeta();
  return success();
}

LogicalResult RMSNormOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                  const VJPContext &,
                                  SmallVectorImpl<Value> &grads) {
  auto g = RMSNormGradOp::create(
      b, getLoc(), TypeRange{getInput().getType(), getGamma().getType()},
      getInput(), getGamma(), dys[0], getEpsilonAttr());
  grads[0] = g.getDinput();
  grads[1] = g.getDgamma();
  return success();
}

LogicalResult GeluOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                               const VJPContext &, SmallVectorImpl<Value> &grads) {
  grads[0] = GeluGradOp::create(b, getLoc(), getInput(), dys[0], getApproximate());
  return success();
}

LogicalResult SiluOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                               const VJPContext &, SmallVectorImpl<Value> &grads) {
  grads[0] = SiluGradOp::create(b, getLoc(), getInput(), dys[0]);
  return success();
}

LogicalResult AddOp::buildVJP(OpBuilder &, ArrayRef<Value> dys,
                              const VJPContext &, SmallVectorImpl<Value> &grads) {
  grads[0] = grads[1] = dys[0];
  return success();
}

LogicalResult MulOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                              const VJPContext &ctx,
                              SmallVectorImpl<Value> &grads) {
  if (ctx.needsGrad(getLhs()))
    grads[0] = MulOp::create(b, getLoc(), dys[0], getRhs());
  if (ctx.needsGrad(getRhs()))
    grads[1] = MulOp::create(b, getLoc(), dys[0], getLhs());
  return success();
}

LogicalResult AttentionOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                    const VJPContext &,
                                    SmallVectorImpl<Value> &grads) {
  auto g = AttentionGradOp::create(
      b, getLoc(),
      TypeRange{getQuery().getType(), getKey().getType(), getValue().getType()},
      getQuery(), getKey(), getValue(), dys[0], getNumHeadsAttr(),
      getNumKvHeadsAttr(), getCausalAttr(), b.getF64FloatAttr(getEffectiveScale()));
  for (StringRef name : {StringRef(TfmDialect::kCpAxisAttrName), StringRef(kCpCommAttrName)})
    if (Attribute cp = (*this)->getAttr(name))
      g->setAttr(name, cp);
  grads[0] = g.getDquery();
  grads[1] = g.getDkey();
  grads[2] = g.getDvalue();
  return success();
}

LogicalResult RopeOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                               const VJPContext &, SmallVectorImpl<Value> &grads) {
  auto g = RopeGradOp::create(b, getLoc(), dys[0], getNumHeadsAttr(),
                              getThetaAttr(), getOffsetAttr());
  if (Attribute cp = (*this)->getAttr(TfmDialect::kCpAxisAttrName))
    g->setAttr(TfmDialect::kCpAxisAttrName, cp);
  grads[0] = g;
  return success();
}

LogicalResult CrossEntropyOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                       const VJPContext &,
                                       SmallVectorImpl<Value> &grads) {
  grads[0] = CrossEntropyGradOp::create(b, getLoc(), getLogits().getType(),
                                        getLogits(), getLabels(), dys[0],
                                        getReductionAttr());
  return success();
}

LogicalResult CrossEntropyFinalizeOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                               const VJPContext &,
                                               SmallVectorImpl<Value> &grads) {
  // The max is a constant shift: the loss does not depend on it.
  auto g = CrossEntropyFinalizeGradOp::create(
      b, getLoc(), TypeRange{getSumExp().getType(), getTarget().getType()},
      getSumExp(), dys[0], getReductionAttr());
  grads[1] = g.getDsumExp();
  grads[2] = g.getDtarget();
  return success();
}

LogicalResult CrossEntropyPartialOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                              const VJPContext &,
                                              SmallVectorImpl<Value> &grads) {
  Value ds = dys[0] ? dys[0] : zerosLike(b, getLoc(), getSumExp());
  Value dt = dys[1] ? dys[1] : zerosLike(b, getLoc(), getTarget());
  auto grad = CrossEntropyPartialGradOp::create(
      b, getLoc(), getLogits().getType(), getLogits(), getLabels(), getMax(), ds,
      dt, getShardAxisAttr());
  if (Attribute vocab = (*this)->getAttr("vocab_size"))
    grad->setAttr("vocab_size", vocab); // padded vocab columns
  grads[0] = grad;
  return success();
}

LogicalResult ReduceMaxOp::buildVJP(OpBuilder &, ArrayRef<Value>,
                                    const VJPContext &, SmallVectorImpl<Value> &) {
  return success(); // only feeds the constant softmax shift
}

LogicalResult BiasAddOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                  const VJPContext &,
                                  SmallVectorImpl<Value> &grads) {
  grads[0] = dys[0];
  grads[1] = SumRowsOp::create(b, getLoc(), getBias().getType(), dys[0]);
  return success();
}

LogicalResult ScaleOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                const VJPContext &, SmallVectorImpl<Value> &grads) {
  grads[0] = ScaleOp::create(b, getLoc(), dys[0], getFactorAttr());
  return success();
}

LogicalResult CastOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                               const VJPContext &, SmallVectorImpl<Value> &grads) {
  grads[0] = CastOp::create(b, getLoc(), getInput().getType(), dys[0]);
  return success();
}

LogicalResult ReshapeOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                  const VJPContext &,
                                  SmallVectorImpl<Value> &grads) {
  grads[0] = ReshapeOp::create(b, getLoc(), getInput().getType(), dys[0]);
  return success();
}

LogicalResult TransposeOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                    const VJPContext &,
                                    SmallVectorImpl<Value> &grads) {
  ArrayRef<int64_t> perm = getPermutation();
  SmallVector<int64_t> inverse(perm.size());
  for (auto [i, p] : llvm::enumerate(perm))
    inverse[p] = i;
  grads[0] = TransposeOp::create(b, getLoc(), getInput().getType(), dys[0],
                                 b.getDenseI64ArrayAttr(inverse));
  return success();
}

LogicalResult SplitOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                const VJPContext &, SmallVectorImpl<Value> &grads) {
  SmallVector<Value> pieces;
  for (auto [r, dy] : llvm::zip(getResults(), dys))
    pieces.push_back(dy ? dy : zerosLike(b, getLoc(), r));
  grads[0] = ConcatOp::create(b, getLoc(), getInput().getType(), pieces,
                              getAxisAttr());
  return success();
}

LogicalResult TpCopyOp::buildVJP(OpBuilder &b, ArrayRef<Value> dys,
                                 const VJPContext &ctx,
                                 SmallVectorImpl<Value> &grads) {
  // Megatron's f: identity forward, all-reduce of the gradient backward.
  int16_t axis = ctx.planAxis(getAxis());
  if (axis < 0)
    return emitOpError() << "names grid axis '" << getAxis()
                         << "', which the module's llmir.plan lacks";
  grads[0] = shard::AllReduceOp::create(b, getLoc(), dys[0].getType(), "grid",
                                        ArrayRef<int16_t>{axis}, dys[0]);
  return success();
}

//===----------------------------------------------------------------------===//
// The shard collectives, as external models
//===----------------------------------------------------------------------===//

namespace {

/// all_reduce(sum): every rank receives the whole gradient (identity); a max
/// only feeds the constant softmax shift (no gradient).
struct AllReduceVJP
    : public VJPOpInterface::ExternalModel<AllReduceVJP, shard::AllReduceOp> {
  LogicalResult buildVJP(Operation *op, OpBuilder &, ArrayRef<Value> dys,
                         const VJPContext &, SmallVectorImpl<Value> &grads) const {
    auto ar = cast<shard::AllReduceOp>(op);
    if (ar.getReduction() == shard::ReductionKind::Max)
      return success();
    if (ar.getReduction() != shard::ReductionKind::Sum)
      return ar.emitOpError() << "has no VJP for this reduction";
    grads[0] = dys[0];
    return success();
  }
};

/// Sequence parallelism: all-gather and reduce-scatter are each other's dual.
struct AllGatherVJP
    : public VJPOpInterface::ExternalModel<AllGatherVJP, shard::AllGatherOp> {
  LogicalResult buildVJP(Operation *op, OpBuilder &b, ArrayRef<Value> dys,
                         const VJPContext &, SmallVectorImpl<Value> &grads) const {
    auto ag = cast<shard::AllGatherOp>(op);
    grads[0] = shard::ReduceScatterOp::create(
        b, ag.getLoc(), ag.getInput().getType(), "grid", ag.getGridAxes(), dys[0],
        shard::ReductionKind::Sum, ag.getGatherAxis());
    return success();
  }
};

struct ReduceScatterVJP
    : public VJPOpInterface::ExternalModel<ReduceScatterVJP,
                                           shard::ReduceScatterOp> {
  LogicalResult buildVJP(Operation *op, OpBuilder &b, ArrayRef<Value> dys,
                         const VJPContext &, SmallVectorImpl<Value> &grads) const {
    auto rs = cast<shard::ReduceScatterOp>(op);
    grads[0] = shard::AllGatherOp::create(b, rs.getLoc(), rs.getInput().getType(),
                                          "grid", rs.getGridAxes(), dys[0],
                                          rs.getScatterAxis());
    return success();
  }
};

} // namespace

void llmir::tfm::registerShardVJPModels(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, shard::ShardDialect *) {
    shard::AllReduceOp::attachInterface<AllReduceVJP>(*ctx);
    shard::AllGatherOp::attachInterface<AllGatherVJP>(*ctx);
    shard::ReduceScatterOp::attachInterface<ReduceScatterVJP>(*ctx);
  });
}
