//===- Strategy.h - user-defined partitioning strategies --------*- C++ -*-===//
//
// A strategy changes the partitioning decisions and nothing else: LLMIR's
// layout propagation, validation (divisibility, heads, vocab), collective
// insertion (Megatron's f/g, vocab-parallel cross-entropy, sequence
// parallelism) and parameter slicing are reused. Out-of-tree strategies
// subclass PartitionStrategy and call partitionModule() from their own pass,
// loaded with `llm-opt --load-pass-plugin` (see examples/plugins/mlp-only).
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_PARTITION_STRATEGY_H
#define LLMIR_PARTITION_STRATEGY_H

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace llmir {

/// How one tfm.linear is partitioned over tp.
enum class LinearRule {
  Default,        ///< Megatron: column-parallel if the input is whole, else row
  Replicate,      ///< keep the weight whole (the input must be whole)
  ColumnParallel, ///< split the output features (the input must be whole)
  RowParallel,    ///< split the input features (the input must be split)
};

class PartitionStrategy {
public:
  virtual ~PartitionStrategy();
  /// Recorded in the plan (`llmir.plan = {strategy = ...}`).
  virtual llvm::StringRef name() const = 0;
  /// The rule for `op`, whose input is split over tp when `inputSplit`.
  /// A failure (after emitting a diagnostic on `op`) stops partitioning.
  virtual mlir::FailureOr<LinearRule> linearRule(tfm::LinearOp op,
                                                 bool inputSplit) {
    return LinearRule::Default;
  }
  /// Whether the token embedding is split by vocab rows (Megatron). The LM
  /// head follows its linearRule; a whole LM head gives a plain cross-entropy.
  virtual bool vocabParallelEmbedding() { return true; }
};

struct PartitionOptions {
  int64_t dp = 1, tp = 1;
  bool sp = false;
  int64_t zero = 0;
  int64_t microbatches = 1;
  std::string schedule = "1f1b";
  std::string recompute = "none";
  bool explain = false;
};

/// What --llm-partition does, with `strategy` (null: Megatron's rules)
/// deciding each linear. Emits diagnostics and fails on impossible plans.
mlir::LogicalResult partitionModule(mlir::ModuleOp module,
                                    const PartitionOptions &options,
                                    PartitionStrategy *strategy = nullptr);

} // namespace llmir

#endif // LLMIR_PARTITION_STRATEGY_H
