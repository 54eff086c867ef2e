//===- Passes.h - tfm dialect passes ----------------------------*- C++ -*-===//

#ifndef LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_H
#define LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace llmir::tfm {

#define GEN_PASS_DECL
#include "llmir/Dialect/Tfm/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "llmir/Dialect/Tfm/Transforms/Passes.h.inc"

} // namespace llmir::tfm

#endif // LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_H
