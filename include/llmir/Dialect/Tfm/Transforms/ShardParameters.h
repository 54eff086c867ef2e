//===- ShardParameters.h - ZeRO-3 (FSDP) parameter sharding -----*- C++ -*-===//
//
// zero=3 stores each parameter as this rank's flat 1/dp chunk and
// all-gathers the whole (tp-local) tensor over dp where the train step
// reads it, one layer ahead of its use.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_TRANSFORMS_SHARDPARAMETERS_H
#define LLMIR_DIALECT_TFM_TRANSFORMS_SHARDPARAMETERS_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace llmir::tfm {

/// Arg attribute of a ZeRO-3 parameter: the (tp-local) shape it gathers to;
/// the argument itself is the rank's flat chunk `[n / dp]`.
inline constexpr llvm::StringLiteral kDpChunkOfAttrName = "llmir.dp_chunk_of";

/// Discardable attribute of a pipeline rank's op (set by
/// --llm-pipeline-split with micro-batches): the micro-batch it computes.
inline constexpr llvm::StringLiteral kMicrobatchAttrName = "llmir.microbatch";

/// Under a zero=3 plan, rewrites a train step (a function with AdamW
/// updates; anything else is left alone) so that parameters are chunks over
/// the ZeRO axis (`lookupZeroAxis`: dp, or cp without dp; "dp" in the names
/// below stands for it):
/// - every parameter argument becomes its flat chunk (`llmir.dp_chunk_of`
///   keeps its shape, `llmir.global_shape` its global one);
/// - its readers read an all-gather of the chunk (a mixed-precision compute
///   copy is cast on the chunk first, so the gather moves the narrow type),
///   one gather per section of the step — a run of ops of one layer, or of
///   ops outside the layers — so a layer gathers for its forward and again
///   for its backward; with `reshard_after_forward = false` once per step;
///   with micro-batches (`llmir.microbatch`) that per micro-batch, or under
///   `zero3_gather = "step"` once per step;
/// - the gather of a section is issued at the start of the section before
///   it (prefetch: the comm stream gathers while the previous section
///   computes; the lowering waits just before the first reader);
/// - AdamW updates the chunk in place and ZeRO's parameter all-gather after
///   the update goes away.
/// Idempotent (chunked arguments are skipped).
mlir::LogicalResult shardParametersOverDp(mlir::ModuleOp module,
                                          mlir::func::FuncOp func);

} // namespace llmir::tfm

#endif // LLMIR_DIALECT_TFM_TRANSFORMS_SHARDPARAMETERS_H
