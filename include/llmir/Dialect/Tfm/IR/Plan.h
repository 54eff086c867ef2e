//===- Plan.h - the parallel plan recorded on a partitioned module -*- C++ -*-===//
//
// --llm-partition records the plan as the module attribute `llmir.plan`, a
// typed #tfm.plan (TfmAttrs.td); grid axis i of `shard.grid @grid` is plan
// axis i. Later passes read it only through these functions and PlanAttr's
// accessors, never by key.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_IR_PLAN_H
#define LLMIR_DIALECT_TFM_IR_PLAN_H

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

#include <optional>

namespace llmir {

/// The module attribute holding the plan.
constexpr llvm::StringLiteral kPlanAttrName = "llmir.plan";

/// The module's plan; null when the module has none (one rank) or when
/// `llmir.plan` is not a #tfm.plan (readPlan reports that).
tfm::PlanAttr getPlan(mlir::ModuleOp module);

/// The module's plan (null when it has none); an error naming `pass` when
/// `llmir.plan` holds anything but a #tfm.plan (an old dictionary, a typo).
mlir::FailureOr<tfm::PlanAttr> readPlan(mlir::ModuleOp module,
                                        llvm::StringRef pass);

/// Records `plan` as the module's plan.
void setPlan(mlir::ModuleOp module, tfm::PlanAttr plan);

struct PlanAxis {
  int16_t index = 0; ///< grid axis index
  int64_t size = 1;  ///< ranks along the axis
};

/// Axis `name` of the module's plan, or nullopt (no plan or no such axis).
std::optional<PlanAxis> lookupPlanAxis(mlir::ModuleOp module, llvm::StringRef name);

/// The axis ZeRO shards over: dp when dp > 1, else cp when cp > 1
/// (context-parallel ranks hold the same parameters, like dp replicas), as
/// `name`; nullopt when neither axis has two ranks. With dp and cp both, the
/// gradients' cp sum is an all-reduce of the dp chunk (see Optimizer.h).
struct ZeroAxis {
  llvm::StringRef name;
  PlanAxis axis;
};
std::optional<ZeroAxis> lookupZeroAxis(mlir::ModuleOp module);

/// Name of grid axis `index`, or nullopt.
std::optional<llvm::StringRef> planAxisName(mlir::ModuleOp module, int64_t index);

/// Whether the module's plan pipelines the step (PlanAttr::isPipelined);
/// false without a plan.
bool isPipelined(mlir::ModuleOp module);

/// The functions with bodies: the models (or train steps) a pass rewrites,
/// collected up front so the pass may replace them.
llvm::SmallVector<mlir::func::FuncOp> modelFunctions(mlir::ModuleOp module);

} // namespace llmir

#endif // LLMIR_DIALECT_TFM_IR_PLAN_H
