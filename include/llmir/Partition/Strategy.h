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

#include "llvm/Support/Error.h"
#include "llvm/Support/GlobPattern.h"

#include <memory>
#include <string>
#include <vector>

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

/// The Hugging Face name of `v` if it is a model parameter (a function
/// argument with `tfm.param`), else "".
llvm::StringRef paramName(mlir::Value v);

/// A strategy given as data: `--llm-partition="tp=2 rules=FILE"` (and
/// `llmir.Plan(rules=...)` in Python). Each line of the file (blank lines and
/// `#` comments aside) is one of
///   <weight-glob> column | row | replicate | default
///   vocab-parallel-embedding true | false
/// A linear takes the rule of the first glob matching its weight's name
/// (e.g. `h.*.mlp.c_fc.weight column`); a linear no glob matches keeps
/// Megatron's default. The partitioner validates every choice as for any
/// strategy (a row-parallel linear needs a split input, ...).
class RuleStrategy : public PartitionStrategy {
public:
  /// Parses rules; errors name `source` and the line.
  static llvm::Expected<std::unique_ptr<RuleStrategy>>
  parse(llvm::StringRef text, llvm::StringRef source);

  llvm::StringRef name() const override { return "rules"; }
  mlir::FailureOr<LinearRule> linearRule(tfm::LinearOp op,
                                         bool inputSplit) override;
  bool vocabParallelEmbedding() override { return vocabParallel; }
  /// The rules no linear matched (likely typos), as "line N: 'glob'".
  std::vector<std::string> unusedRules() const;

private:
  struct Rule {
    llvm::GlobPattern glob;
    std::string text;
    unsigned line;
    LinearRule rule;
    bool used = false;
  };
  std::vector<Rule> rules;
  bool vocabParallel = true;
};

struct PartitionOptions {
  int64_t dp = 1, tp = 1;
  bool sp = false;
  /// Context parallelism: ranks along `cp` (the sequence in 2*cp chunks).
  int64_t cp = 1;
  /// How attention exchanges K/V over cp: "allgather" or "ring".
  std::string cpComm = "allgather";
  int64_t zero = 0;
  /// zero=3: all-gather each layer's parameters again for its backward.
  bool reshardAfterForward = true;
  /// zero=3 with micro-batches: gather and reduce-scatter per "microbatch",
  /// or gather once per "step" (see #tfm.plan's zero3_gather).
  std::string zero3Gather = "microbatch";
  /// Pipeline stages (ranks along `pp`) and virtual stages per rank.
  int64_t pp = 1, vpp = 1;
  int64_t microbatches = 1;
  std::string schedule = "1f1b";
  /// Layers per stage ("E,t*3|t*4,L", see Pipeline/Stages.h); empty: balance
  /// the estimated stage costs.
  std::string layout;
  std::string recompute = "none";
  bool explain = false;
};

/// What --llm-partition does, with `strategy` (null: Megatron's rules)
/// deciding each linear. Emits diagnostics and fails on impossible plans.
mlir::LogicalResult partitionModule(mlir::ModuleOp module,
                                    const PartitionOptions &options,
                                    PartitionStrategy *strategy = nullptr);

/// "40GiB", "512MB", "1e9" (bytes): decimal and binary units.
llvm::Expected<double> parseByteSize(llvm::StringRef text);

/// --llm-partition's schedule=auto: sets `options.schedule` (and vpp) to the
/// schedule kind the cost model times fastest for this layout on `gpu` (a
/// device preset; empty: h100-80g) among those whose fullest rank's
/// simulated peak activations fit `maxActivationMem` (empty: no limit).
/// With options.explain it prints every kind's time and activations. Emits
/// an error naming the least demanding kind when none fits.
mlir::LogicalResult chooseSchedule(mlir::ModuleOp module,
                                   PartitionOptions &options,
                                   llvm::StringRef maxActivationMem,
                                   llvm::StringRef gpu);

} // namespace llmir

#endif // LLMIR_PARTITION_STRATEGY_H
