//===- Stages.h - assigning layers to pipeline stages -----------*- C++ -*-===//
//
// A pipeline layout: which contiguous run of transformer layers each
// (virtual) stage runs. The embedding (E) is always on the first stage and
// the head (final norm, LM head, loss: L) on the last one. Layouts are
// written like Megatron-LM's `--pipeline-model-parallel-layout`:
// "E,t*3|t*4|t*4|t*3,L" (stages separated by '|', `t*N` = N layers).
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_PARTITION_PIPELINE_STAGES_H
#define LLMIR_PARTITION_PIPELINE_STAGES_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/Error.h"

#include <string>

namespace llmir::pipeline {

/// One stage of a layout.
struct StageSpan {
  bool embedding = false; ///< E: the ops before the first layer
  bool head = false;      ///< L: the ops after the last layer
  int64_t firstLayer = 0, numLayers = 0;
  double cost = 0; ///< estimated forward FLOPs (balanceStages/assignStages)
};

/// Parses a layout for `numStages` stages and `numLayers` layers. Errors name
/// the offending stage (E not first, L not last, layer count mismatch, ...).
llvm::Expected<llvm::SmallVector<StageSpan>>
parseLayout(llvm::StringRef text, int64_t numStages, int64_t numLayers);

/// The contiguous split of the layers into `numStages` stages (each with at
/// least one layer) that minimises the largest stage cost, the embedding
/// cost counted on the first stage and the head cost on the last (the
/// pipeline's step time is set by its slowest stage: T = max T_i).
llvm::SmallVector<StageSpan> balanceStages(llvm::ArrayRef<double> layerCosts,
                                           double embeddingCost,
                                           double headCost, int64_t numStages);

/// "E,t*2|t*2,L": the inverse of parseLayout.
std::string formatLayout(llvm::ArrayRef<StageSpan> stages);

/// The stage attribute every op of a pipelined model function carries.
constexpr llvm::StringLiteral kStageAttr = "llmir.stage";

/// Splits `func` (a tfm model whose layers are tfm.layer ops) into
/// `numStages` stages, by `layout` or, when it is empty, by balanceStages
/// over each layer's estimated forward FLOPs; tags every top-level op with
/// `llmir.stage`. Returns the stages (with costs) or emits a diagnostic.
mlir::FailureOr<llvm::SmallVector<StageSpan>>
assignStages(mlir::func::FuncOp func, int64_t numStages, llvm::StringRef layout);

} // namespace llmir::pipeline

#endif // LLMIR_PARTITION_PIPELINE_STAGES_H
