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

#include "llmir/Dialect/Tfm/IR/TfmDialect.h.inc"
#include "llmir/Dialect/Tfm/IR/TfmEnums.h.inc"

#define GET_OP_CLASSES
#include "llmir/Dialect/Tfm/IR/TfmOps.h.inc"

#endif // LLMIR_DIALECT_TFM_IR_TFMDIALECT_H
