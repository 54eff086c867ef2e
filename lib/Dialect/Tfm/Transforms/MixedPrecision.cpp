//===- MixedPrecision.cpp - bf16/f16 compute with f32 master weights ------===//
//
// --llm-mixed-precision records the policy; applyMixedPrecision retypes each
// model function: parameters f32 behind explicit tfm.cast ops (training) or
// compute-typed (inference), activations compute-typed, the cross-entropy
// family and the loss f32. The casts are the semantics: kernels compute in
// f32 and round once per compute-typed store.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/Transforms/MixedPrecision.h"

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/MapVector.h"

namespace llmir::tfm {
#define GEN_PASS_DEF_LLMMIXEDPRECISION
#include "llmir/Dialect/Tfm/Transforms/Passes.h.inc"
} // namespace llmir::tfm

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

std::optional<MixedPrecisionPolicy> llmir::tfm::getMixedPrecision(ModuleOp module) {
  auto dict = module->getAttrOfType<DictionaryAttr>(kMixedPrecisionAttrName);
  if (!dict)
    return std::nullopt;
  auto compute = dict.getAs<TypeAttr>("compute");
  auto reduce = dict.getAs<TypeAttr>("grad_reduce");
  if (!compute || !reduce || !isa<FloatType>(compute.getValue()) ||
      !isa<FloatType>(reduce.getValue()))
    return std::nullopt;
  return MixedPrecisionPolicy{cast<FloatType>(compute.getValue()),
                              cast<FloatType>(reduce.getValue()),
                              dict.contains("applied")};
}

void llmir::tfm::setMixedPrecision(ModuleOp module, const MixedPrecisionPolicy &policy) {
  Builder b(module.getContext());
  SmallVector<NamedAttribute> entries = {
      b.getNamedAttr("compute", TypeAttr::get(policy.compute)),
      b.getNamedAttr("grad_reduce", TypeAttr::get(policy.gradReduce))};
  if (policy.applied)
    entries.push_back(b.getNamedAttr("applied", b.getUnitAttr()));
  module->setAttr(kMixedPrecisionAttrName, b.getDictionaryAttr(entries));
}

namespace {

bool isF32Tensor(Type t) {
  auto tensor = dyn_cast<RankedTensorType>(t);
  return tensor && tensor.getElementType().isF32();
}

RankedTensorType withElement(Type t, Type element) {
  return cast<RankedTensorType>(t).clone(element);
}

/// Ops that read compute-typed logits and keep their results (the loss and
/// the per-row softmax statistics, the vocab-parallel row max among them) in
/// f32: the kernels read the logits as they are, so no f32 logits copy.
bool isF32Island(Operation *op) {
  return isa<CrossEntropyOp, CrossEntropyPartialOp, CrossEntropyFinalizeOp,
             ReduceMaxOp>(op);
}

class Rewriter {
public:
  Rewriter(func::FuncOp func, FloatType compute, bool inference)
      : func(func), compute(compute), inference(inference), b(func.getContext()) {}

  LogicalResult run() {
    retypeArguments();
    LogicalResult result = success();
    func.walk([&](Operation *op) {
      if (failed(result) || isa<func::FuncOp, func::ReturnOp>(op) || inserted.contains(op))
        return;
      result = retypeResults(op);
    });
    if (failed(result))
      return failure();
    castReturnedValues();
    return success();
  }

private:
  /// Parameters: f32 behind one cast per user (training) or compute-typed
  /// (inference); KV-cache states compute-typed; other float inputs behind
  /// casts (the interface stays f32).
  void retypeArguments() {
    Block &entry = func.getBody().front();
    for (BlockArgument arg : entry.getArguments()) {
      if (!isF32Tensor(arg.getType()))
        continue;
      unsigned i = arg.getArgNumber();
      bool param = static_cast<bool>(func.getArgAttr(i, "tfm.param"));
      bool state = static_cast<bool>(func.getArgAttr(i, "tfm.state"));
      if (state || (param && inference)) {
        arg.setType(withElement(arg.getType(), compute));
        continue;
      }
      castUses(arg);
    }
  }

  /// One cast per user op, right before it, carrying the user's pipeline
  /// stage and layer tags (so stage split and recompute see it with its user).
  void castUses(Value v) {
    llvm::MapVector<Operation *, SmallVector<OpOperand *>> byUser;
    for (OpOperand &use : v.getUses())
      byUser[use.getOwner()].push_back(&use);
    for (auto &[user, uses] : byUser) {
      b.setInsertionPoint(user);
      auto c = CastOp::create(b, v.getLoc(), withElement(v.getType(), compute), v);
      for (StringRef tag : {"llmir.stage", "tfm.layer"})
        if (Attribute a = user->getAttr(tag))
          c->setAttr(tag, a);
      inserted.insert(c);
      for (OpOperand *use : uses)
        use->set(c.getResult());
    }
  }

  LogicalResult retypeResults(Operation *op) {
    if (auto layer = dyn_cast<LayerOp>(op)) {
      auto yield = cast<YieldOp>(layer.getBody().front().getTerminator());
      for (auto [r, v] : llvm::zip(layer->getResults(), yield.getValues()))
        r.setType(v.getType());
      return success();
    }
    if (isF32Island(op))
      return success();
    bool readsCompute = false, readsF32 = false;
    for (Value v : op->getOperands()) {
      auto t = dyn_cast<RankedTensorType>(v.getType());
      if (!t)
        continue;
      readsCompute |= t.getElementType() == compute;
      readsF32 |= t.getElementType().isF32();
    }
    // A receive gets what the other stage sends: an activation or its gradient.
    if (!readsCompute && !isa<RecvOp>(op))
      return success();
    if (readsF32 && readsCompute)
      return op->emitOpError()
             << "mixes f32 and " << compute
             << " operands; --llm-mixed-precision cannot type it (cast one side)";
    for (OpResult r : op->getResults())
      if (isF32Tensor(r.getType()))
        r.setType(withElement(r.getType(), compute));
    return success();
  }

  void castReturnedValues() {
    Operation *ret = func.getBody().back().getTerminator();
    b.setInsertionPoint(ret);
    for (OpOperand &operand : ret->getOpOperands()) {
      auto t = dyn_cast<RankedTensorType>(operand.get().getType());
      if (!t || t.getElementType() != compute)
        continue;
      auto c = CastOp::create(b, ret->getLoc(), withElement(t, b.getF32Type()),
                              operand.get());
      // The cast runs where its value is made (its pipeline stage).
      if (Operation *def = operand.get().getDefiningOp())
        if (Attribute stage = def->getAttr("llmir.stage"))
          c->setAttr("llmir.stage", stage);
      operand.set(c.getResult());
    }
    func.setFunctionType(FunctionType::get(func.getContext(),
                                           func.getBody().front().getArgumentTypes(),
                                           ret->getOperandTypes()));
  }

  func::FuncOp func;
  FloatType compute;
  bool inference;
  OpBuilder b;
  llvm::SmallPtrSet<Operation *, 32> inserted;
};

bool isInference(ModuleOp module) {
  auto model = module->getAttrOfType<DictionaryAttr>("tfm.model");
  return model && model.contains("inference");
}

} // namespace

LogicalResult llmir::tfm::applyMixedPrecision(ModuleOp module) {
  std::optional<MixedPrecisionPolicy> policy = getMixedPrecision(module);
  if (!policy || policy->applied)
    return success();
  bool inference = isInference(module);
  for (func::FuncOp func : modelFunctions(module))
    if (failed(Rewriter(func, policy->compute, inference).run()))
      return failure();
  policy->applied = true;
  setMixedPrecision(module, *policy);
  return success();
}

void llmir::tfm::legalizeCollectiveTypes(ModuleOp module) {
  auto narrow = [](Type t) {
    auto tensor = dyn_cast<RankedTensorType>(t);
    return tensor && isa<FloatType>(tensor.getElementType()) &&
           !tensor.getElementType().isF32();
  };
  SmallVector<Operation *> ops;
  module.walk([&](Operation *op) {
    if (auto ar = dyn_cast<shard::AllReduceOp>(op)) {
      // A bf16 sum has a runtime path (bf16 on the wire, f32 accumulation).
      auto element = cast<RankedTensorType>(ar.getType()).getElementType();
      if (ar.getReduction() != shard::ReductionKind::Sum || !element.isBF16())
        if (narrow(ar.getType()))
          ops.push_back(op);
      return;
    }
    // A gather only moves data: 2-byte elements travel as pairs in the
    // communicators' f32 words when each rank sends an even count.
    if (auto gather = dyn_cast<shard::AllGatherOp>(op)) {
      auto in = cast<RankedTensorType>(gather.getInput().getType());
      if (in.getElementTypeBitWidth() == 16 && in.getNumElements() % 2 == 0)
        return;
    }
    if (isa<shard::AllGatherOp, shard::ReduceScatterOp, shard::BroadcastOp>(op) &&
        narrow(op->getResult(0).getType()))
      ops.push_back(op);
    else if (isa<SendOp>(op) && narrow(op->getOperand(0).getType()))
      ops.push_back(op);
    else if (isa<RecvOp>(op) && narrow(op->getResult(0).getType()))
      ops.push_back(op);
  });
  OpBuilder b(module.getContext());
  Type f32 = b.getF32Type();
  for (Operation *op : ops) {
    b.setInsertionPoint(op);
    for (OpOperand &operand : op->getOpOperands())
      if (narrow(operand.get().getType()))
        operand.set(CastOp::create(b, op->getLoc(),
                                   withElement(operand.get().getType(), f32),
                                   operand.get()));
    b.setInsertionPointAfter(op);
    for (OpResult r : op->getResults()) {
      if (!narrow(r.getType()))
        continue;
      Type narrowType = r.getType();
      r.setType(withElement(narrowType, f32));
      auto back = CastOp::create(b, op->getLoc(), narrowType, r);
      r.replaceAllUsesExcept(back.getResult(), back);
    }
  }
}

namespace {

struct LLMMixedPrecisionPass
    : public tfm::impl::LLMMixedPrecisionBase<LLMMixedPrecisionPass> {
  using Base::Base;

  /// Option errors name the option, not the (long) module line.
  InFlightDiagnostic optionError() {
    return emitError(UnknownLoc::get(&getContext()));
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Builder b(module.getContext());
    FloatType computeType, reduceType;
    if (compute == "bf16")
      computeType = b.getBF16Type();
    else if (compute == "f16")
      computeType = b.getF16Type();
    if (gradReduce == "f32")
      reduceType = b.getF32Type();
    else if (gradReduce == "bf16")
      reduceType = b.getBF16Type();
    if (!computeType) {
      optionError() << "--llm-mixed-precision: compute must be bf16 or f16, found '"
                         << std::string(compute) << "'";
      return signalPassFailure();
    }
    if (!reduceType) {
      optionError()
          << "--llm-mixed-precision: grad-reduce must be f32 or bf16, found '"
          << std::string(gradReduce) << "'";
      return signalPassFailure();
    }
    if (getMixedPrecision(module)) {
      optionError() << "--llm-mixed-precision: the module already has a "
                            "mixed-precision policy";
      return signalPassFailure();
    }
    setMixedPrecision(module, {computeType, reduceType, /*applied=*/false});
    // Before --llm-partition the policy waits for it (the partitioner reads
    // f32 parameters directly); afterwards it applies at once.
    if (module->hasAttr(kPlanAttrName) && failed(applyMixedPrecision(module)))
      return signalPassFailure();
  }
};

} // namespace

unsigned llmir::tfm::shareParameterCasts(func::FuncOp func) {
  if (func.isExternal())
    return 0;
  // Keyed by (argument, result type): the first cast in the entry block
  // dominates every later one.
  llvm::DenseMap<std::pair<Value, Type>, CastOp> first;
  unsigned removed = 0;
  for (Operation &op : llvm::make_early_inc_range(func.getBody().front())) {
    auto castOp = dyn_cast<CastOp>(op);
    if (!castOp || !isa<BlockArgument>(castOp.getInput()) ||
        !func.getArgAttr(cast<BlockArgument>(castOp.getInput()).getArgNumber(),
                         TfmDialect::kParamAttrName))
      continue;
    auto [it, inserted] =
        first.try_emplace({castOp.getInput(), castOp.getType()}, castOp);
    if (inserted)
      continue;
    castOp.getResult().replaceAllUsesWith(it->second.getResult());
    castOp.erase();
    ++removed;
  }
  return removed;
}

