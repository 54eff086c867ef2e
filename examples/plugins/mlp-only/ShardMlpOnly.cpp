//===- ShardMlpOnly.cpp - an out-of-tree "shard only the MLP" strategy ----===//
//
// A user partitioning strategy, built against an installed LLMIR and loaded
// into llm-opt as a pass plugin:
//
//   llm-opt m.mlir --load-pass-plugin=LLMIRShardMlpOnly.so
//     --pass-pipeline='builtin.module(llmir-example-shard-mlp-only{tp=2})'
//   (options: tp=<n> (default 2), explain=true prints each decision)
//
// The rule: split only the MLP blocks over tensor parallelism (column-parallel
// fc1 / gate / up, row-parallel fc2 / down: one all-reduce per MLP);
// attention, the embeddings and the LM head stay whole. Only the decisions
// live here: LLMIR's partitioner (llmir::partitionModule) does the layout
// propagation, validation, collective insertion and parameter slicing, so
// the result trains, lowers and runs like any --llm-partition output.
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Partition/Strategy.h"

#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "llvm/Config/llvm-config.h"

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

namespace {

class MlpOnlyStrategy : public PartitionStrategy {
public:
  StringRef name() const override { return "mlp-only"; }

  FailureOr<LinearRule> linearRule(LinearOp op, bool inputSplit) override {
    StringRef weight = paramName(op.getWeight());
    if (!weight.contains(".mlp."))
      return LinearRule::Replicate; // attention, LM head, anything else
    // GPT-2: c_fc (in) / c_proj (out); LLaMA: gate_proj, up_proj / down_proj.
    if (weight.ends_with(".c_fc.weight") || weight.ends_with(".gate_proj.weight") ||
        weight.ends_with(".up_proj.weight"))
      return LinearRule::ColumnParallel;
    if (weight.ends_with(".c_proj.weight") || weight.ends_with(".down_proj.weight"))
      return LinearRule::RowParallel;
    return op.emitOpError() << "multiplies by MLP weight '" << weight
                            << "', which the mlp-only strategy has no rule for",
           failure();
  }

  bool vocabParallelEmbedding() override { return false; }
};

struct ShardMlpOnlyPass
    : public PassWrapper<ShardMlpOnlyPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ShardMlpOnlyPass)

  ShardMlpOnlyPass() = default;
  ShardMlpOnlyPass(const ShardMlpOnlyPass &other) : PassWrapper(other) {}

  StringRef getArgument() const final { return "llmir-example-shard-mlp-only"; }
  StringRef getDescription() const final {
    return "Split only the MLP blocks over tensor parallelism (plugin example "
           "of a user strategy reusing LLMIR's partitioner)";
  }
  void getDependentDialects(DialectRegistry &registry) const override {
    registry.insert<shard::ShardDialect>();
  }

  void runOnOperation() override {
    PartitionOptions options;
    options.tp = tp;
    options.explain = explain;
    MlpOnlyStrategy strategy;
    if (failed(partitionModule(getOperation(), options, &strategy)))
      signalPassFailure();
  }

  Option<int64_t> tp{*this, "tp", llvm::cl::desc("Tensor-parallel degree"),
                     llvm::cl::init(2)};
  Option<bool> explain{*this, "explain",
                       llvm::cl::desc("Print each partitioning decision"),
                       llvm::cl::init(false)};
};

} // namespace

extern "C" LLVM_ATTRIBUTE_WEAK PassPluginLibraryInfo mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "LLMIRShardMlpOnly", LLVM_VERSION_STRING,
          []() { PassRegistration<ShardMlpOnlyPass>(); }};
}
