//===- Passes.h - tfm dialect passes ----------------------------*- C++ -*-===//

#ifndef LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_H
#define LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace llmir::tfm {

#define GEN_PASS_DECL
#include "llmir/Dialect/Tfm/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "llmir/Dialect/Tfm/Transforms/Passes.h.inc"

/// Moves the ops of every top-level tfm.layer of `func` into its body,
/// tagging each with `tfm.layer = i` (and the layer's `llmir.stage`), and
/// replaces the layer results by the yielded values. The train step and the
/// forward-only pipeline split work on flat functions.
void inlineLayers(mlir::func::FuncOp func);

} // namespace llmir::tfm

#endif // LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_H
