//===- ModuleCost.h - a module's model, plan and cluster for the cost model ===//
//
// Shared by --llm-memory-report, --llm-simulate, --llm-auto-partition and
// --llm-partition's schedule=auto (library LLMIRModuleCost).
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_ANALYSIS_MODULECOST_H
#define LLMIR_ANALYSIS_MODULECOST_H

#include "llmir/Analysis/Cost/CostModel.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Partition/Strategy.h"

#include "mlir/IR/BuiltinOps.h"

namespace llmir {

/// The `tfm.model` attribute as a cost-model config; `dtype` gets the
/// parameters' element type ("f32", "bf16", "f16"). Emits an error naming
/// `pass` when the attribute is missing or incomplete.
mlir::FailureOr<cost::TransformerConfig>
readModelConfig(mlir::ModuleOp module, llvm::StringRef pass, std::string *dtype);

/// The layout recorded in `llmir.plan` (toCostLayout); a single rank when
/// the module is not partitioned.
mlir::FailureOr<cost::Layout> readPlanLayout(mlir::ModuleOp module,
                                             llvm::StringRef pass);

/// The one conversion from a plan to the cost model's layout (dp, cp, tp, pp,
/// vpp, micro-batches, schedule, recompute, sp, zero, the stage split); an
/// error when the plan's stage layout does not parse. (The cost model itself
/// stays free of MLIR, so the conversion lives here.)
llvm::Expected<cost::Layout> toCostLayout(tfm::PlanAttr plan);

/// --llm-partition's options as the cost model's layout (the stage layout
/// parsed; an error when it does not), and a layout as those options: the one
/// conversion each way, for schedule=auto and --llm-auto-partition.
llvm::Expected<cost::Layout> toCostLayout(const PartitionOptions &options);
PartitionOptions toPartitionOptions(const cost::Layout &layout);

/// Applies `dp=2,tp=4,schedule=1f1b,...` (commas or spaces) to `layout`.
mlir::LogicalResult parseLayoutSpec(mlir::ModuleOp module, llvm::StringRef pass,
                                    llvm::StringRef spec, cost::Layout &layout);

/// What --llm-memory-report and --llm-simulate evaluate: the model config
/// and the plan's layout, overridden by the pass's `layout=` option
/// (`layoutOption`, empty: none). Emits the error and fails otherwise.
mlir::LogicalResult readModelAndLayout(mlir::ModuleOp module, llvm::StringRef pass,
                                       llvm::StringRef layoutOption,
                                       cost::TransformerConfig &cfg,
                                       cost::Layout &layout, std::string *dtype);

struct ClusterSpec {
  std::string cluster, clusterFile, gpu, intra, inter;
  int64_t nodes = 0, gpusPerNode = 0;
};

/// The cluster from the pass options (cluster-file, then `cluster=` spec,
/// then the separate options override).
mlir::FailureOr<cost::Cluster> buildCluster(mlir::ModuleOp module,
                                            llvm::StringRef pass,
                                            const ClusterSpec &spec);

/// Precision, activation policy and gradient lifetime for `style`.
mlir::FailureOr<cost::EstimateOptions>
styleOptions(mlir::ModuleOp module, llvm::StringRef pass, llvm::StringRef style,
             llvm::StringRef dtype, bool onCpu, const cost::Layout &layout);

} // namespace llmir

#endif // LLMIR_ANALYSIS_MODULECOST_H
