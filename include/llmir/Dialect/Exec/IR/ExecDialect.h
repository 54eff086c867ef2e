//===- ExecDialect.h - the exec scheduled-program dialect -------*- C++ -*-===//

#ifndef LLMIR_DIALECT_EXEC_IR_EXECDIALECT_H
#define LLMIR_DIALECT_EXEC_IR_EXECDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/RegionKindInterface.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "llmir/Dialect/Exec/IR/ExecDialect.h.inc"

#define GET_TYPEDEF_CLASSES
#include "llmir/Dialect/Exec/IR/ExecTypes.h.inc"

#define GET_OP_CLASSES
#include "llmir/Dialect/Exec/IR/ExecOps.h.inc"

namespace llmir::exec {

/// Arena offsets are aligned so every buffer can be used by vector loads and
/// by cuBLAS without copies.
constexpr int64_t kBufferAlignment = 64;

/// The contract between the compiler and every runtime backend for one named
/// kernel: how many buffers it reads and writes and which attributes it needs.
struct KernelSignature {
  llvm::StringLiteral name;
  unsigned minIns, maxIns, minOuts, maxOuts;
  llvm::ArrayRef<llvm::StringLiteral> requiredAttrs;
};

/// The signature of `name`, or null if no backend implements such a kernel.
const KernelSignature *getKernelSignature(llvm::StringRef name);

/// All kernels, for documentation and for tests that compare the compiler's
/// table with the runtime's.
llvm::ArrayRef<KernelSignature> getKernelSignatures();

} // namespace llmir::exec

#endif // LLMIR_DIALECT_EXEC_IR_EXECDIALECT_H
