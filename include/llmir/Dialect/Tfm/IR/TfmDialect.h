//===- TfmDialect.h - the tfm transformer dialect ---------------*- C++ -*-===//
//
// Declares the tfm dialect, its enums and its operations.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_IR_TFMDIALECT_H
#define LLMIR_DIALECT_TFM_IR_TFMDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include <functional>

namespace llmir::tfm {
/// What a VJP rule may ask of the autodiff driver.
struct VJPContext {
  /// Whether `v` depends on a parameter (its gradient is needed).
  std::function<bool(mlir::Value)> needsGrad;
  /// Index of the plan's grid axis `name`, or -1.
  std::function<int16_t(llvm::StringRef)> planAxis;
};
} // namespace llmir::tfm

#include "llmir/Dialect/Tfm/IR/TfmDialect.h.inc"
#include "llmir/Dialect/Tfm/IR/TfmInterfaces.h.inc"
#include "llmir/Dialect/Tfm/IR/TfmEnums.h.inc"

#define GET_OP_CLASSES
#include "llmir/Dialect/Tfm/IR/TfmOps.h.inc"

namespace llmir::tfm {
/// Attaches VJPOpInterface to the `shard` collectives (all_reduce,
/// all_gather, reduce_scatter) so partitioned models can be differentiated.
void registerShardVJPModels(mlir::DialectRegistry &registry);
} // namespace llmir::tfm

#endif // LLMIR_DIALECT_TFM_IR_TFMDIALECT_H
