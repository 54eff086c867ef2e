//===- Passes.h - conversion passes -----------------------------*- C++ -*-===//

#ifndef LLMIR_CONVERSION_PASSES_H
#define LLMIR_CONVERSION_PASSES_H

#include "llmir/Dialect/Exec/IR/ExecDialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace llmir {

#define GEN_PASS_DECL
#include "llmir/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "llmir/Conversion/Passes.h.inc"

} // namespace llmir

#endif // LLMIR_CONVERSION_PASSES_H
