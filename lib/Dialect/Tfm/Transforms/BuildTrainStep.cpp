//===- BuildTrainStep.cpp - reverse-mode autodiff + AdamW -----------------===//
//
// The forward is flattened (layers inlined, each op tagged with its layer),
// then each op's VJPOpInterface rule is applied in reverse program order. Gradients are
// only built for values that depend on a parameter.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/MixedPrecision.h"
#include "llmir/Dialect/Tfm/Transforms/Optimizer.h"
#include "llmir/Dialect/Tfm/Transforms/ShardParameters.h"
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
/// Pipeline stage of an op (--llm-partition with pp > 1 tags the forward).
constexpr StringLiteral kStageAttr = "llmir.stage";
/// Marks the ops the autodiff created (the backward pass).
constexpr StringLiteral kBackwardAttr = tfm::TfmDialect::kBackwardAttrName;

/// Index of `axis` in the module's llmir.plan, or -1.
int16_t planAxis(ModuleOp module, StringRef axis) {
  std::optional<PlanAxis> a = lookupPlanAxis(module, axis);
  return a ? a->index : -1;
}

int64_t stageOf(Operation *op) {
  auto stage = op->getAttrOfType<IntegerAttr>(kStageAttr);
  return stage ? stage.getInt() : 0;
}

class Autodiff {
public:
  Autodiff(ModuleOp module, func::FuncOp func, const OptimizerOptions &options)
      : module(module), func(func), b(func.getContext()), options(options),
        pipelined(isPipelined(module)) {}

  LogicalResult run();

private:
  LogicalResult backward(Operation *op);

  void accumulate(Value v, Value grad) {
    if (!grad || !needsGrad.contains(v))
      return;
    // Pipelined: a parameter used on two stages (tied embeddings) keeps one
    // gradient per stage; --llm-pipeline-split sums them across stages once
    // per step instead of sending a partial gradient every micro-batch.
    if (pipelined && isa<BlockArgument>(v)) {
      auto [it, inserted] = stageGrads.try_emplace({v, currentStage}, grad);
      if (!inserted)
        it->second = AddOp::create(b, loc, it->second, grad);
      return;
    }
    auto [it, inserted] = grads.try_emplace(v, grad);
    if (!inserted)
      it->second = AddOp::create(b, loc, it->second, grad);
  }

  /// Pipelined: returns the micro-batch's loss and the per-stage parameter
  /// gradients instead of applying an optimizer.
  void finishMicrobatch(func::ReturnOp ret, ArrayRef<BlockArgument> params);

  ModuleOp module;
  func::FuncOp func;
  OpBuilder b;
  OptimizerOptions options;
  bool pipelined;
  int64_t currentStage = 0;
  Location loc = UnknownLoc::get(func.getContext());
  DenseSet<Value> needsGrad;
  DenseMap<Value, Value> grads;
  DenseMap<std::pair<Value, int64_t>, Value> stageGrads;
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

void Autodiff::finishMicrobatch(func::ReturnOp ret,
                                ArrayRef<BlockArgument> params) {
  SmallVector<Value> results = {ret.getOperand(0)};
  SmallVector<DictionaryAttr> resultAttrs = {
      b.getDictionaryAttr(b.getNamedAttr("tfm.loss", b.getUnitAttr()))};
  for (BlockArgument param : params)
    for (auto &[key, grad] : stageGrads)
      if (key.first == param) {
        results.push_back(grad);
        resultAttrs.push_back(b.getDictionaryAttr(
            {b.getNamedAttr("tfm.grad_of",
                            b.getI64IntegerAttr(param.getArgNumber())),
             b.getNamedAttr(kStageAttr, b.getI64IntegerAttr(key.second))}));
      }
  // DenseMap order is arbitrary: sort each parameter's entries by stage.
  SmallVector<unsigned> order(results.size() - 1);
  for (unsigned i = 0; i < order.size(); ++i)
    order[i] = i + 1;
  llvm::stable_sort(order, [&](unsigned x, unsigned y) {
    auto key = [&](unsigned i) {
      return std::make_pair(
          resultAttrs[i].getAs<IntegerAttr>("tfm.grad_of").getInt(),
          resultAttrs[i].getAs<IntegerAttr>(kStageAttr).getInt());
    };
    return key(x) < key(y);
  });
  SmallVector<Value> sortedResults = {results[0]};
  SmallVector<Attribute> sortedAttrs = {resultAttrs[0]};
  for (unsigned i : order) {
    sortedResults.push_back(results[i]);
    sortedAttrs.push_back(resultAttrs[i]);
  }
  b.setInsertionPoint(ret);
  func::ReturnOp::create(b, ret.getLoc(), sortedResults);
  ret.erase();
  SmallVector<Type> types;
  for (Value v : sortedResults)
    types.push_back(v.getType());
  func.setFunctionType(b.getFunctionType(func.getArgumentTypes(), types));
  func.setAllResultAttrs(sortedAttrs);
  func->setAttr("llmir.bucket_bytes", b.getI64IntegerAttr(options.bucketBytes));
  func->setAttr("llmir.grad_comm_dtype",
                b.getStringAttr(options.bf16Comm ? "bf16" : "f32"));
  if (options.gradNorm || options.lossScaled)
    func->setAttr("llmir.grad_norm", b.getUnitAttr());
  if (options.lossScaled)
    func->setAttr("llmir.loss_scaled", b.getUnitAttr());
  func.setSymName("train_microbatch");
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
  // d loss / d loss: 1, or the runtime's loss scale S (f16 training), which
  // makes every gradient S times the true one.
  Operation *seed =
      options.lossScaled
          ? LossScaleOp::create(b, loss.getLoc(), lossType).getOperation()
          : arith::ConstantOp::create(
                b, loss.getLoc(), lossType,
                DenseElementsAttr::get(
                    lossType, b.getFloatAttr(lossType.getElementType(), 1.0)))
                .getOperation();
  grads[loss] = seed->getResult(0);
  // Backward ops are marked with or without pipelining: the memory plan
  // reads the mark too (saved activations).
  seed->setAttr(kBackwardAttr, b.getUnitAttr());
  if (pipelined) {
    if (Operation *def = loss.getDefiningOp())
      seed->setAttr(kStageAttr, b.getI64IntegerAttr(stageOf(def)));
  }
  OptimizerBuilder optimizer(b, module, func, options);
  // Gradient buckets (dp without ZeRO): a parameter's gradient is final once
  // the VJPs of all its uses ran.
  bool bucketed = optimizer.bucketed() && !pipelined;
  DenseMap<Value, int64_t> pendingUses;
  for (Operation *op : forward)
    for (Value v : op->getOperands())
      if (llvm::is_contained(params, v))
        ++pendingUses[v];

  // Full activation recompute: each layer's forward is re-run right before
  // its backward, so only the layer inputs stay alive from the forward pass.
  tfm::PlanAttr plan = getPlan(module);
  bool recompute = plan && plan.isFullRecompute();
  std::optional<int64_t> recomputedLayer;
  IRMapping recomputed;
  for (Operation *op : llvm::reverse(forward)) {
    auto layer = op->getAttrOfType<IntegerAttr>(kLayerAttr);
    currentStage = stageOf(op);
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
        optimizer.addToBucket(param, grads.lookup(v), loc);
      }
    }
    for (Operation *bop = last ? last->getNextNode() : &entry.front();
         bop && bop != ret.getOperation(); bop = bop->getNextNode()) {
      if (layer)
        bop->setAttr(kLayerAttr, layer);
      bop->setAttr(kBackwardAttr, b.getUnitAttr());
      if (pipelined)
        bop->setAttr(kStageAttr, b.getI64IntegerAttr(currentStage));
    }
  }

  if (pipelined) {
    finishMicrobatch(ret, params);
    return success();
  }
  optimizer.flushBucket(ret.getLoc());
  // Optimizer. Without ZeRO the gradients were all-reduced over dp in
  // buckets above. ZeRO-1: reduce-scatter the flat gradient over dp, update
  // this rank's chunk (moments only for the chunk), then all-gather the
  // parameter.
  SmallVector<std::pair<BlockArgument, Value>> updates;
  for (BlockArgument param : params)
    if (Value grad = grads.lookup(param)) // else: unused by the loss
      updates.push_back({param, grad});
  if (failed(optimizer.emitUpdates(updates)))
    return failure();
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
    if (failed(readPlan(module, "tfm-build-train-step")))
      return signalPassFailure();
    if (failed(applyMixedPrecision(module)))
      return signalPassFailure();
    SmallVector<func::FuncOp> models = modelFunctions(module);
    if (gradCommDtype != "f32" && gradCommDtype != "bf16") {
      module.emitError() << "--tfm-build-train-step: grad-comm-dtype must be "
                            "f32 or bf16, found '"
                         << std::string(gradCommDtype) << "'";
      return signalPassFailure();
    }
    OptimizerOptions options;
    options.bucketBytes = bucketBytes;
    std::optional<MixedPrecisionPolicy> policy = getMixedPrecision(module);
    options.bf16Comm =
        gradCommDtype == "bf16" || (policy && policy->gradReduce.isBF16());
    options.gradNorm = gradNorm;
    // f16's narrow range needs dynamic loss scaling (bf16 has f32's range).
    options.lossScaled = policy && policy->compute.isF16();
    for (func::FuncOp func : models)
      if (failed(Autodiff(module, func, options).run()))
        return signalPassFailure();
    for (func::FuncOp func : modelFunctions(module)) // zero=3 only
      if (failed(shardParametersOverDp(module, func)))
        return signalPassFailure();
  }
};

} // namespace

/// Moves the ops of every tfm.layer into the enclosing block, tagging them
/// with the layer index (and pipeline stage), and replaces the layer results
/// by the yielded values.
void llmir::tfm::inlineLayers(func::FuncOp func) {
  SmallVector<LayerOp> layers(func.getBody().front().getOps<LayerOp>());
  for (LayerOp layer : layers) {
    Block &body = layer.getBody().front();
    auto yield = cast<YieldOp>(body.getTerminator());
    IntegerAttr index = layer.getIndexAttr();
    Attribute stage = layer->getAttr("llmir.stage");
    for (Operation &op : body.without_terminator())
      op.walk([&](Operation *nested) {
        nested->setAttr("tfm.layer", index);
        if (stage)
          nested->setAttr("llmir.stage", stage);
      });
    layer.replaceAllUsesWith(yield.getValues());
    Block *parent = layer->getBlock();
    parent->getOperations().splice(layer->getIterator(), body.getOperations(),
                                   body.begin(), std::prev(body.end()));
    layer.erase();
  }
}
