//===- Plan.h - the parallel plan recorded on a partitioned module -*- C++ -*-===//
//
// --llm-partition records the plan as the module attribute `llmir.plan`
// ({axes = ["dp", "tp"], sizes = array<i64: ...>, ...}); grid axis i of
// `shard.grid @grid` is plan axis i. Later passes read it through these.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_IR_PLAN_H
#define LLMIR_DIALECT_TFM_IR_PLAN_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

#include <optional>

namespace llmir {

/// The module attribute holding the plan.
constexpr llvm::StringLiteral kPlanAttrName = "llmir.plan";

struct PlanAxis {
  int16_t index = 0; ///< grid axis index
  int64_t size = 1;  ///< ranks along the axis
};

/// Axis `name` of the module's plan, or nullopt (no plan or no such axis).
std::optional<PlanAxis> lookupPlanAxis(mlir::ModuleOp module, llvm::StringRef name);

/// Name of grid axis `index`, or nullopt.
std::optional<llvm::StringRef> planAxisName(mlir::ModuleOp module, int64_t index);

/// The functions with bodies: the models (or train steps) a pass rewrites,
/// collected up front so the pass may replace them.
llvm::SmallVector<mlir::func::FuncOp> modelFunctions(mlir::ModuleOp module);

} // namespace llmir

#endif // LLMIR_DIALECT_TFM_IR_PLAN_H
