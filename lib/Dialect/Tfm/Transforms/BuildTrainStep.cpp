//===- BuildTrainStep.cpp - reverse-mode autodiff + AdamW -----------------===//
//
// The forward is flattened (layers inlined, each op tagged with its layer),
// then each op's VJPOpInterface rule is applied in reverse program order. Gradients are
// only built for values that depend on a parameter.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseSet.h"

namespace llmir::tfm {
#define GEN_PASS_DEF_TFMBUILDTRAINSTEP
#include "llmir/Dialect/Tfm/Transforms/Passes.h.inc"
} // namespace llmir::tfm

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

namespace {

constexpr StringLiteral kLayerAttr = "tfm.layer";

/// Index of `axis` in the module's llmir.plan, or -1.
int16_t planAxis(ModuleOp module, StringRef axis) {
  std::optional<PlanAxis> a = lookupPlanAxis(module, axis);
  return a ? a->index : -1;
}

int64_t planAxisSize(ModuleOp module, StringRef axis) {
  std::optional<PlanAxis> a = lookupPlanAxis(module, axis);
  return a ? a->size : 1;
}

/// Moves the ops of every tfm.layer into the enclosing block, tagging them
/// with the layer index, and replaces the layer results by the yielded values.
void inlineLayers(func::FuncOp func) {
  SmallVector<LayerOp> layers(func.getBody().front().getOps<LayerOp>());
  for (LayerOp layer : layers) {
    Block &body = layer.getBody().front();
    auto yield = cast<YieldOp>(body.getTerminator());
    IntegerAttr index = layer.getIndexAttr();
    for (Operation &op : body.without_terminator())
      op.walk([&](Operation *nested) { nested->setAttr(kLayerAttr, index); });
    layer.replaceAllUsesWith(yield.getValues());
    Block *parent = layer->getBlock();
    parent->getOperations().splice(layer->getIterator(), body.getOperations(),
                                   body.begin(), std::prev(body.end()));
    layer.erase();
  }
}

class Autodiff {
public:
  Autodiff(ModuleOp module, func::FuncOp func, int64_t bucketBytes,
           bool bf16Comm)
      : module(module), func(func), b(func.getContext()),
        bucketBytes(bucketBytes), bf16Comm(bf16Comm) {}

  LogicalResult run();

private:
  LogicalResult backward(Operation *op);

  void accumulate(Value v, Value grad) {
    if (!grad || !needsGrad.contains(v))
      return;
    auto [it, inserted] = grads.try_emplace(v, grad);
    if (!inserted)
      it->second = AddOp::create(b, loc, it->second, grad);
  }


  Value reshape(Value v, ArrayRef<int64_t> shape) {
    auto type = RankedTensorType::get(
        shape, cast<RankedTensorType>(v.getType()).getElementType());
    return ReshapeOp::create(b, loc, type, v);
  }

  /// All-reduces the gradients of `bucket` over dp as one flat tensor and
  /// records the reduced gradient of each parameter.
  void flushBucket(SmallVectorImpl<BlockArgument> &bucket, int16_t dpAxis);

  ModuleOp module;
  func::FuncOp func;
  OpBuilder b;
  int64_t bucketBytes;
  bool bf16Comm; ///< all-reduce gradient buckets in bf16
  DenseMap<Value, Value> reducedGrads; ///< parameter -> dp-reduced gradient
  Location loc = UnknownLoc::get(func.getContext());
  DenseSet<Value> needsGrad;
  DenseMap<Value, Value> grads;
};

LogicalResult Autodiff::backward(Operation *op) {
  SmallVector<Value> resultGrads;
  for (Value r : op->getResults())
    resultGrads.push_back(grads.lookup(r));
  if (llvm::none_of(resultGrads, [](Value g) { return static_cast<bool>(g); }))
    return success();
  auto vjp = dyn_cast<VJPOpInterface>(op);
  if (!vjp)
    return op->emitOpError() << "has no VJP (reverse-mode rule) yet";
  loc = op->getLoc();
  VJPContext context{[&](Value v) { return needsGrad.contains(v); },
                     [&](StringRef axis) { return planAxis(module, axis); }};
  SmallVector<Value> operandGrads(op->getNumOperands());
  if (failed(vjp.buildVJP(b, resultGrads, context, operandGrads)))
    return failure();
  for (auto [operand, grad] : llvm::zip(op->getOperands(), operandGrads))
    accumulate(operand, grad);
  return success();
}

void Autodiff::flushBucket(SmallVectorImpl<BlockArgument> &bucket,
                           int16_t dpAxis) {
  if (bucket.empty())
    return;
  SmallVector<Value> flat;
  SmallVector<Type> pieceTypes;
  int64_t total = 0;
  Type elementType;
  for (BlockArgument param : bucket) {
    auto type = cast<RankedTensorType>(param.getType());
    elementType = type.getElementType();
    flat.push_back(reshape(grads.lookup(param), {type.getNumElements()}));
    pieceTypes.push_back(flat.back().getType());
    total += type.getNumElements();
  }
  auto bucketType = RankedTensorType::get({total}, elementType);
  Value joined = flat.size() == 1
                     ? flat.front()
                     : ConcatOp::create(b, loc, bucketType, flat,
                                        b.getI64IntegerAttr(0))
                           .getResult();
  Value reduced;
  if (bf16Comm) {
    // Gradient compression: bf16 on the wire, fp32 accumulation in the
    // runtime's reduction, fp32 again for the optimizer.
    auto wire = RankedTensorType::get({total}, b.getBF16Type());
    Value narrow = CastOp::create(b, loc, wire, joined);
    Value summed = shard::AllReduceOp::create(b, loc, wire, "grid",
                                              ArrayRef<int16_t>{dpAxis}, narrow);
    reduced = CastOp::create(b, loc, bucketType, summed);
  } else {
    reduced = shard::AllReduceOp::create(b, loc, bucketType, "grid",
                                         ArrayRef<int16_t>{dpAxis}, joined);
  }
  SmallVector<Value> pieces;
  if (bucket.size() == 1)
    pieces.push_back(reduced);
  else
    llvm::append_range(pieces, SplitOp::create(b, loc, pieceTypes, reduced,
                                               b.getI64IntegerAttr(0))
                                   .getResults());
  for (auto [param, piece] : llvm::zip(bucket, pieces))
    reducedGrads[param] =
        ReshapeOp::create(b, loc, param.getType(), piece).getResult();
  bucket.clear();
}

LogicalResult Autodiff::run() {
  Block &entry = func.getBody().front();
  auto ret = cast<func::ReturnOp>(entry.getTerminator());
  if (ret.getNumOperands() != 1 ||
      cast<RankedTensorType>(ret.getOperand(0).getType()).getRank() != 0)
    return func.emitOpError() << "tfm-build-train-step needs a model that "
                                 "returns only the scalar loss (import without "
                                 "--logits)";
  inlineLayers(func);

  // Values that depend on a parameter need gradients.
  SmallVector<BlockArgument> params;
  for (BlockArgument arg : entry.getArguments())
    if (func.getArgAttr(arg.getArgNumber(), TfmDialect::kParamAttrName)) {
      params.push_back(arg);
      needsGrad.insert(arg);
    }
  SmallVector<Operation *> forward;
  for (Operation &op : entry.without_terminator()) {
    forward.push_back(&op);
    if (llvm::any_of(op.getOperands(),
                     [&](Value v) { return needsGrad.contains(v); }))
      for (Value r : op.getResults())
        needsGrad.insert(r);
  }

  b.setInsertionPoint(ret);
  Value loss = ret.getOperand(0);
  auto lossType = cast<RankedTensorType>(loss.getType());
  grads[loss] = arith::ConstantOp::create(
      b, loss.getLoc(), lossType,
      DenseElementsAttr::get(lossType,
                             b.getFloatAttr(lossType.getElementType(), 1.0)));
  int16_t dpAxis = planAxis(module, "dp");
  int64_t dp = planAxisSize(module, "dp");
  auto plan = module->getAttrOfType<DictionaryAttr>(kPlanAttrName);
  auto zeroAttr = plan ? plan.getAs<IntegerAttr>("zero") : IntegerAttr();
  bool zero = zeroAttr && zeroAttr.getInt() == 1 && dp > 1;
  // Gradient buckets (dp without ZeRO): a parameter's gradient is final once
  // the VJPs of all its uses ran.
  bool bucketed = dp > 1 && !zero;
  DenseMap<Value, int64_t> pendingUses;
  for (Operation *op : forward)
    for (Value v : op->getOperands())
      if (llvm::is_contained(params, v))
        ++pendingUses[v];
  SmallVector<BlockArgument> bucket;
  int64_t bucketFill = 0;

  // Full activation recompute: each layer's forward is re-run right before
  // its backward, so only the layer inputs stay alive from the forward pass.
  auto recomputeAttr = plan ? plan.getAs<StringAttr>("recompute") : StringAttr();
  bool recompute = recomputeAttr && recomputeAttr.getValue() == "full";
  std::optional<int64_t> recomputedLayer;
  IRMapping recomputed;
  for (Operation *op : llvm::reverse(forward)) {
    auto layer = op->getAttrOfType<IntegerAttr>(kLayerAttr);
    // Backward ops go right before the return; remember where this op's start.
    Operation *last = ret->getPrevNode();
    Operation *target = op;
    if (recompute && layer) {
      if (recomputedLayer != layer.getInt()) {
        recomputedLayer = layer.getInt();
        recomputed.clear();
        for (Operation *fwd : forward)
          if (auto l = fwd->getAttrOfType<IntegerAttr>(kLayerAttr);
              l && l.getInt() == layer.getInt() && !isa<AdamWUpdateOp>(fwd)) {
            Operation *clone = b.clone(*fwd, recomputed);
            clone->setAttr("tfm.recompute", b.getUnitAttr());
            for (auto [orig, copy] :
                 llvm::zip(fwd->getResults(), clone->getResults()))
              if (needsGrad.contains(orig))
                needsGrad.insert(copy);
          }
      }
      // Differentiate the recomputed op: its results take the gradients of
      // the original ones.
      target = recomputed.lookup(op);
      for (auto [orig, copy] : llvm::zip(op->getResults(), target->getResults()))
        if (Value g = grads.lookup(orig))
          grads[copy] = g;
    }
    if (failed(backward(target)))
      return failure();
    if (bucketed) {
      loc = op->getLoc();
      for (Value v : op->getOperands()) {
        auto param = dyn_cast<BlockArgument>(v);
        if (!param || !pendingUses.count(v) || --pendingUses[v] != 0 ||
            !grads.count(v))
          continue;
        bucket.push_back(param);
        bucketFill += cast<RankedTensorType>(v.getType()).getNumElements() * 4;
        if (bucketFill >= bucketBytes) {
          flushBucket(bucket, dpAxis);
          bucketFill = 0;
        }
      }
    }
    if (!layer)
      continue;
    for (Operation *bop = last ? last->getNextNode() : &entry.front();
         bop && bop != ret.getOperation(); bop = bop->getNextNode())
      bop->setAttr(kLayerAttr, layer);
  }

  loc = ret.getLoc();
  flushBucket(bucket, dpAxis);

  // Optimizer. Without ZeRO the gradients were all-reduced over dp in
  // buckets above. ZeRO-1: reduce-scatter the flat gradient over dp, update
  // this rank's chunk (moments only for the chunk), then all-gather the
  // parameter.
  for (BlockArgument param : params) {
    // Bucketed gradients are already summed over dp (sums commute, so the
    // sequence-parallel sum over tp below can come after).
    Value grad = bucketed ? reducedGrads.lookup(param) : grads.lookup(param);
    if (!grad)
      continue; // unused by the loss
    loc = param.getLoc();
    auto type = cast<RankedTensorType>(param.getType());
    // Sequence parallelism: replicated parameters used on a sequence block
    // hold partial gradients; sum them over that axis first.
    if (auto axis = func.getArgAttrOfType<StringAttr>(param.getArgNumber(),
                                                      "llmir.grad_sum")) {
      int16_t index = planAxis(module, axis.getValue());
      if (index < 0)
        return func.emitOpError() << "parameter #" << param.getArgNumber()
                                  << " sums its gradient over unknown axis '"
                                  << axis.getValue() << "'";
      grad = shard::AllReduceOp::create(b, loc, grad.getType(), "grid",
                                        ArrayRef<int16_t>{index}, grad);
    }
    // torch.optim.AdamW as the reference uses it: betas (0.9, 0.95), eps 1e-8,
    // weight decay on parameters of rank >= 2.
    UnitAttr decay = type.getRank() >= 2 ? b.getUnitAttr() : UnitAttr();
    StringAttr shardAxis;
    if (zero) {
      int64_t n = type.getNumElements();
      if (n % dp != 0)
        return func.emitOpError()
               << "zero=1 needs every parameter's size to divide by dp=" << dp
               << "; parameter #" << param.getArgNumber() << " has " << n
               << " elements";
      Value flat = reshape(grad, {n});
      grad = shard::ReduceScatterOp::create(
          b, loc, RankedTensorType::get({n / dp}, type.getElementType()), "grid",
          ArrayRef<int16_t>{dpAxis}, flat, shard::ReductionKind::Sum,
          /*scatter_axis=*/APInt(64, 0));
      shardAxis = b.getStringAttr("dp");
    }
    AdamWUpdateOp::create(b, loc, param, grad, decay, b.getF64FloatAttr(0.9),
                          b.getF64FloatAttr(0.95), b.getF64FloatAttr(1e-8),
                          shardAxis);
    if (zero)
      ParamAllGatherOp::create(b, loc, param, shardAxis);
  }
  func.setSymName("train_step");
  return success();
}

struct TfmBuildTrainStepPass
    : public tfm::impl::TfmBuildTrainStepBase<TfmBuildTrainStepPass> {
  using Base::Base;

  void getDependentDialects(DialectRegistry &registry) const override {
    Base::getDependentDialects(registry);
    tfm::registerShardVJPModels(registry);
  }
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> models = modelFunctions(module);
    if (gradCommDtype != "f32" && gradCommDtype != "bf16") {
      module.emitError() << "--tfm-build-train-step: grad-comm-dtype must be "
                            "f32 or bf16, found '"
                         << std::string(gradCommDtype) << "'";
      return signalPassFailure();
    }
    for (func::FuncOp func : models)
      if (failed(Autodiff(module, func, bucketBytes, gradCommDtype == "bf16").run()))
        return signalPassFailure();
  }
};

} // namespace
