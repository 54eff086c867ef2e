//===- ShardMlpOnly.cpp - an out-of-tree "shard only the MLP" strategy ----===//
//
// A user partitioning strategy, built against an installed LLMIR and loaded
// into llm-opt as a pass plugin:
//
//   llm-opt m.mlir --load-pass-plugin=LLMIRShardMlpOnly.so
//     --pass-pipeline='builtin.module(llmir-example-shard-mlp-only{tp=2})'
//   (options: tp=<n> (default 2), explain=true prints each decision)
//
// The rule: split only the MLP blocks over tensor parallelism (Megatron-LM's
// column-parallel fc1 / gate / up, row-parallel fc2 / down, one all-reduce per
// MLP); attention, embeddings and the LM head stay replicated. Linears are
// classified by the Hugging Face name of their weight (`tfm.param`). The
// output uses exactly the conventions of LLMIR's --llm-partition
// (`llmir.shard` / `llmir.global_shape` on parameters, `tfm.tp_copy` before
// column-parallel linears, `shard.all_reduce` on `shard.grid @grid`, the
// `llmir.plan` module attribute), so --tfm-build-train-step,
// --llm-lower-to-exec, `llm-translate --export-program` and `llm-run` accept it
// unchanged.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace llmir::tfm;

namespace {

constexpr StringLiteral kGridName = "grid";
constexpr int16_t kTpAxis = 1; // the plan's axes are ["dp", "tp"]

/// What the strategy does with one tfm.linear.
enum class Role { Replicated, ColumnParallel, RowParallel };

struct LinearClass {
  Role role = Role::Replicated;
  StringRef what;              ///< "mlp", "attention" or "other" (reports)
  WeightLayout expectedLayout; ///< the HF layout of an MLP weight
};

bool isLayerIndex(StringRef s) {
  return !s.empty() && llvm::all_of(s, llvm::isDigit);
}

/// Classifies a linear by its weight's HF name. GPT-2 (Conv1D, [in, out]):
/// h.N.mlp.c_fc / c_proj; LLaMA (Linear, [out, in]):
/// model.layers.N.mlp.gate_proj / up_proj / down_proj. Any other name with an
/// `mlp` component is an MLP this strategy does not know: an error, so a new
/// architecture is never silently left replicated.
FailureOr<LinearClass> classify(Operation *op, StringRef name) {
  SmallVector<StringRef> parts;
  name.split(parts, '.');
  if (!llvm::is_contained(parts, "mlp")) {
    StringRef what = "other";
    if (llvm::is_contained(parts, "attn") ||
        llvm::is_contained(parts, "self_attn"))
      what = "attention";
    else if (name == "wte.weight" || name == "lm_head.weight" ||
             name == "model.embed_tokens.weight")
      what = "LM head";
    return LinearClass{Role::Replicated, what, WeightLayout::in_out};
  }
  if (parts.size() == 5 && parts[0] == "h" && isLayerIndex(parts[1]) &&
      parts[2] == "mlp" && parts[4] == "weight") {
    if (parts[3] == "c_fc")
      return LinearClass{Role::ColumnParallel, "mlp", WeightLayout::in_out};
    if (parts[3] == "c_proj")
      return LinearClass{Role::RowParallel, "mlp", WeightLayout::in_out};
  }
  if (parts.size() == 6 && parts[0] == "model" && parts[1] == "layers" &&
      isLayerIndex(parts[2]) && parts[3] == "mlp" && parts[5] == "weight") {
    if (parts[4] == "gate_proj" || parts[4] == "up_proj")
      return LinearClass{Role::ColumnParallel, "mlp", WeightLayout::out_in};
    if (parts[4] == "down_proj")
      return LinearClass{Role::RowParallel, "mlp", WeightLayout::out_in};
  }
  return op->emitOpError()
         << "multiplies by MLP weight '" << name
         << "', which the mlp-only strategy has no rule for (it knows GPT-2 "
            "h.N.mlp.c_fc/c_proj and LLaMA "
            "model.layers.N.mlp.gate_proj/up_proj/down_proj)";
}

RankedTensorType withShape(Value v, ArrayRef<int64_t> shape) {
  return RankedTensorType::get(
      shape, cast<RankedTensorType>(v.getType()).getElementType());
}

ArrayRef<int64_t> shapeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}

/// Rewrites one model function: MLP linears split over tp, all else whole.
class MlpOnlyPartitioner {
public:
  MlpOnlyPartitioner(func::FuncOp func, int64_t tp, bool explain)
      : func(func), tp(tp), explain(explain), builder(func.getContext()) {}

  LogicalResult run();

private:
  LogicalResult rewriteOp(Operation *op);
  LogicalResult rewriteLinear(LinearOp op);
  /// Records that `param` (an argument of `func` with `tfm.param`) is split on
  /// `dim` over tp; one parameter split two ways is an error.
  LogicalResult shardParam(Operation *user, Value param, int64_t dim);

  StringRef paramName(Value v) {
    auto arg = dyn_cast<BlockArgument>(v);
    if (!arg || arg.getOwner()->getParentOp() != func ||
        !arg.getOwner()->isEntryBlock())
      return {};
    auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                  TfmDialect::kParamAttrName);
    return name ? name.getValue() : StringRef();
  }

  void report(StringRef name, const Twine &decision) {
    if (explain)
      llvm::outs() << "mlp-only: " << name << ": " << decision << "\n";
  }

  func::FuncOp func;
  int64_t tp;
  bool explain;
  OpBuilder builder;
  DenseSet<Value> split;                     ///< activations split over tp
  llvm::MapVector<Value, int64_t> paramDims; ///< sharded param -> its dim
  DenseSet<Operation *> shardedLinears;
  DenseMap<Value, Value> tpCopies; ///< replicated input -> its tfm.tp_copy
  int64_t numColumn = 0, numRow = 0, numReplicated = 0;
};

LogicalResult MlpOnlyPartitioner::shardParam(Operation *user, Value param,
                                             int64_t dim) {
  if (paramName(param).empty())
    return user->emitOpError() << "expects its weight and bias to be model "
                                  "parameters (arguments with 'tfm.param') to "
                                  "split them over tp";
  int64_t size = shapeOf(param)[dim];
  if (size % tp != 0)
    return user->emitOpError()
           << "cannot split dim " << dim << " (" << size << ") of '"
           << paramName(param) << "' over tp=" << tp;
  auto [it, inserted] = paramDims.try_emplace(param, dim);
  if (!inserted && it->second != dim)
    return user->emitOpError()
           << "splits '" << paramName(param) << "' on dim " << dim
           << ", already split on dim " << it->second;
  return success();
}

LogicalResult MlpOnlyPartitioner::rewriteLinear(LinearOp op) {
  StringRef name = paramName(op.getWeight());
  // A weight that is not a named parameter is not an MLP weight: whole.
  LinearClass unnamed{Role::Replicated, "other", WeightLayout::in_out};
  FailureOr<LinearClass> cls =
      name.empty() ? FailureOr<LinearClass>(unnamed) : classify(op, name);
  if (failed(cls))
    return failure();
  bool inputSplit = split.contains(op.getInput());
  if (cls->role != Role::Replicated && op.getLayout() != cls->expectedLayout)
    return op.emitOpError()
           << "has layout " << stringifyWeightLayout(op.getLayout()) << " but '"
           << name << "' is stored as "
           << stringifyWeightLayout(cls->expectedLayout);
  bool inOut = op.getLayout() == WeightLayout::in_out;

  switch (cls->role) {
  case Role::Replicated: {
    if (inputSplit)
      return op.emitOpError()
             << "is not an MLP linear but reads a tensor split over tp by the "
                "mlp-only strategy";
    ++numReplicated;
    report(name.empty() ? "(unnamed weight)" : name,
           "replicated (" + cls->what + ")");
    return success();
  }
  case Role::ColumnParallel: {
    if (inputSplit)
      return op.emitOpError() << "is a column-parallel MLP linear ('" << name
                              << "') but its input is already split over tp";
    // Megatron's column split: the weight on its output features.
    if (failed(shardParam(op, op.getWeight(), inOut ? 1 : 0)))
      return failure();
    if (Value bias = op.getBias())
      if (failed(shardParam(op, bias, 0)))
        return failure();
    // Megatron's `f`: identity forward, all-reduce of the input gradient over
    // tp backward. gate_proj and up_proj share one copy of their input.
    Value x = op.getInput();
    auto [it, inserted] = tpCopies.try_emplace(x, Value());
    if (inserted) {
      builder.setInsertionPoint(op);
      it->second = TpCopyOp::create(builder, op.getLoc(), x,
                                    builder.getStringAttr("tp"));
    }
    op.getInputMutable().assign(it->second);
    SmallVector<int64_t> shape(shapeOf(op.getResult()));
    shape.back() /= tp;
    op.getResult().setType(withShape(op.getResult(), shape));
    split.insert(op.getResult());
    shardedLinears.insert(op);
    ++numColumn;
    report(name, "column-parallel (" + Twine(op.getOutFeatures()) +
                     " output features split over tp=" + Twine(tp) + ")");
    return success();
  }
  case Role::RowParallel: {
    if (!inputSplit)
      return op.emitOpError()
             << "is a row-parallel MLP linear ('" << name
             << "') but its input is not split over tp; expected it to come "
                "from column-parallel MLP linears through element-wise ops";
    if (failed(shardParam(op, op.getWeight(), inOut ? 0 : 1)))
      return failure();
    // Partial sums on each rank: all-reduce over tp, then the bias once.
    Value bias = op.getBias();
    op.getBiasMutable().clear();
    Value partial = op.getResult();
    builder.setInsertionPointAfter(op);
    auto reduce = shard::AllReduceOp::create(
        builder, op.getLoc(), partial.getType(), kGridName,
        ArrayRef<int16_t>{kTpAxis}, partial, shard::ReductionKind::Sum);
    partial.replaceAllUsesExcept(reduce.getResult(), reduce);
    if (bias) {
      builder.setInsertionPointAfter(reduce);
      auto add =
          BiasAddOp::create(builder, op.getLoc(), reduce.getResult().getType(),
                            reduce.getResult(), bias);
      reduce.getResult().replaceAllUsesExcept(add.getResult(), add);
    }
    shardedLinears.insert(op);
    ++numRow;
    report(name, "row-parallel (" + Twine(op.getInFeatures()) +
                     " input features split over tp=" + Twine(tp) +
                     "), then all-reduce over tp" +
                     (bias ? " and the bias" : ""));
    return success();
  }
  }
  return success();
}

LogicalResult MlpOnlyPartitioner::rewriteOp(Operation *op) {
  if (auto linear = dyn_cast<LinearOp>(op))
    return rewriteLinear(linear);
  bool anySplit = llvm::any_of(op->getOperands(),
                               [&](Value v) { return split.contains(v); });
  if (!anySplit)
    return success();
  // Inside an MLP: the activation (GELU, SiLU) and SwiGLU's product act on
  // each rank's slice of the hidden features.
  if (isa<GeluOp, SiluOp, ScaleOp>(op)) {
    op->getResult(0).setType(op->getOperand(0).getType());
    split.insert(op->getResult(0));
    return success();
  }
  if (isa<MulOp>(op)) {
    if (!llvm::all_of(op->getOperands(),
                      [&](Value v) { return split.contains(v); }) ||
        op->getOperand(0).getType() != op->getOperand(1).getType())
      return op->emitOpError()
             << "multiplies a tensor split over tp with a replicated one";
    op->getResult(0).setType(op->getOperand(0).getType());
    split.insert(op->getResult(0));
    return success();
  }
  return op->emitOpError()
         << "reads an MLP activation split over tp, but the mlp-only strategy "
            "only allows GELU/SiLU/scale/mul between the column- and "
            "row-parallel MLP linears";
}

LogicalResult MlpOnlyPartitioner::run() {
  // Program order, tfm.layer bodies included; ops this pass creates are not
  // revisited.
  SmallVector<Operation *> ops;
  func.getBody().walk<WalkOrder::PreOrder>(
      [&](Operation *op) { ops.push_back(op); });
  for (Operation *op : ops)
    if (failed(rewriteOp(op)))
      return failure();

  // Parameters take their local shapes; llmir.shard tells the runtime which
  // slice each rank loads (the --llm-partition conventions, parts = 1).
  Builder b(func.getContext());
  for (auto [value, dim] : paramDims) {
    auto arg = cast<BlockArgument>(value);
    for (Operation *user : arg.getUsers())
      if (!shardedLinears.contains(user))
        return user->emitOpError()
               << "uses '" << paramName(arg)
               << "' whole, but the mlp-only strategy splits it over tp";
    SmallVector<int64_t> global(shapeOf(arg)), local(global);
    local[dim] /= tp;
    arg.setType(withShape(arg, local));
    unsigned i = arg.getArgNumber();
    func.setArgAttr(i, "llmir.global_shape", b.getDenseI64ArrayAttr(global));
    func.setArgAttr(
        i, "llmir.shard",
        b.getDictionaryAttr({b.getNamedAttr("axis", b.getStringAttr("tp")),
                             b.getNamedAttr("dim", b.getI64IntegerAttr(dim)),
                             b.getNamedAttr("parts", b.getI64IntegerAttr(1))}));
  }
  Block &entry = func.getBody().front();
  func.setFunctionType(b.getFunctionType(
      entry.getArgumentTypes(), entry.getTerminator()->getOperandTypes()));
  if (explain)
    llvm::outs() << "mlp-only: " << func.getSymName() << ": "
                 << numColumn + numRow << " MLP linears split over tp=" << tp
                 << " (" << numRow << " all-reduces), " << numReplicated
                 << " linears replicated\n";
  return success();
}

struct ShardMlpOnlyPass
    : public PassWrapper<ShardMlpOnlyPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ShardMlpOnlyPass)

  ShardMlpOnlyPass() = default;
  ShardMlpOnlyPass(const ShardMlpOnlyPass &other) : PassWrapper(other) {}

  StringRef getArgument() const final { return "llmir-example-shard-mlp-only"; }
  StringRef getDescription() const final {
    return "Split only the MLP linears over tensor parallelism (an "
           "out-of-tree LLMIR partitioning strategy)";
  }
  void getDependentDialects(DialectRegistry &registry) const override {
    registry.insert<shard::ShardDialect>();
  }

  Option<int64_t> tp{*this, "tp", llvm::cl::desc("Tensor-parallel degree"),
                     llvm::cl::init(2)};
  Option<bool> explain{*this, "explain",
                       llvm::cl::desc("Print how each linear is treated"),
                       llvm::cl::init(false)};

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (tp < 1) {
      module.emitError() << "llmir-example-shard-mlp-only: tp must be >= 1, "
                            "found "
                         << int64_t(tp);
      return signalPassFailure();
    }
    if (module.lookupSymbol(kGridName) || module->hasAttr("llmir.plan")) {
      module.emitError() << "llmir-example-shard-mlp-only: the module is "
                            "already partitioned (it has @"
                         << kGridName << " or llmir.plan)";
      return signalPassFailure();
    }
    if (auto model =
            module->getAttrOfType<DictionaryAttr>(TfmDialect::kModelAttrName))
      if (auto type = model.getAs<StringAttr>("model_type");
          type && type.getValue() != "gpt2" && type.getValue() != "llama") {
        module.emitError() << "llmir-example-shard-mlp-only: model_type '"
                           << type.getValue()
                           << "' is not supported (expected gpt2 or llama)";
        return signalPassFailure();
      }
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      if (failed(MlpOnlyPartitioner(func, tp, explain).run()))
        return signalPassFailure();
    }
    // The same grid and plan as --llm-partition="dp=1 tp=<tp>".
    OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
    shard::GridOp::create(b, module.getLoc(), b.getStringAttr(kGridName),
                          b.getDenseI64ArrayAttr({1, tp}));
    module->setAttr(
        "llmir.plan",
        b.getDictionaryAttr(
            {b.getNamedAttr("axes", b.getStrArrayAttr({"dp", "tp"})),
             b.getNamedAttr("sizes", b.getDenseI64ArrayAttr({1, tp})),
             b.getNamedAttr("sp", b.getBoolAttr(false)),
             b.getNamedAttr("zero", b.getI64IntegerAttr(0)),
             b.getNamedAttr("microbatches", b.getI64IntegerAttr(1)),
             b.getNamedAttr("schedule", b.getStringAttr("1f1b")),
             b.getNamedAttr("recompute", b.getStringAttr("none")),
             b.getNamedAttr("strategy", b.getStringAttr("mlp-only"))}));
  }
};

} // namespace

extern "C" LLVM_ATTRIBUTE_WEAK PassPluginLibraryInfo mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "LLMIRShardMlpOnly", LLVM_VERSION_STRING,
          []() { PassRegistration<ShardMlpOnlyPass>(); }};
}
