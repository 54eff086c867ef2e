//===- TfmDialect.h - the tfm transformer dialect ---------------*- C++ -*-===//
//
// Declares the tfm dialect, its attributes, enums and operations.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_IR_TFMDIALECT_H
#define LLMIR_DIALECT_TFM_IR_TFMDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/DialectImplementation.h"
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

// Field parsers and printers of #tfm.plan (TfmAttrs.td); a parse error
// names the field.
/// `["dp", "tp"]`
mlir::FailureOr<llvm::SmallVector<mlir::StringAttr>>
parsePlanAxisNames(mlir::AsmParser &p);
/// `[2, 4]`
mlir::FailureOr<llvm::SmallVector<int64_t>> parsePlanAxisSizes(mlir::AsmParser &p);
/// `true` or `false`
mlir::FailureOr<bool> parsePlanFlag(mlir::AsmParser &p, llvm::StringRef field);
template <typename T>
void printBracketedList(mlir::AsmPrinter &p, llvm::ArrayRef<T> elements) {
  p << '[';
  llvm::interleaveComma(elements, p);
  p << ']';
}
} // namespace llmir::tfm

#include "llmir/Dialect/Tfm/IR/TfmDialect.h.inc"
#define GET_ATTRDEF_CLASSES
#include "llmir/Dialect/Tfm/IR/TfmAttrs.h.inc"
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
