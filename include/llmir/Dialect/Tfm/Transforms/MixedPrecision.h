//===- MixedPrecision.h - the mixed-precision policy ------------*- C++ -*-===//
//
// The policy --llm-mixed-precision records on the module and the rewrite that
// applies it (parameters f32, activations bf16/f16, explicit tfm.cast ops).
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_TRANSFORMS_MIXEDPRECISION_H
#define LLMIR_DIALECT_TFM_TRANSFORMS_MIXEDPRECISION_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LogicalResult.h"

#include <optional>

namespace llmir::tfm {

/// Module attribute: {compute = bf16, grad_reduce = f32, applied}.
constexpr llvm::StringLiteral kMixedPrecisionAttrName = "llmir.mixed_precision";

struct MixedPrecisionPolicy {
  mlir::FloatType compute;    ///< bf16 or f16
  mlir::FloatType gradReduce; ///< f32 or bf16
  bool applied = false;       ///< the function types already carry it
};

/// The module's policy, if --llm-mixed-precision ran.
std::optional<MixedPrecisionPolicy> getMixedPrecision(mlir::ModuleOp module);

/// Records `policy` (not yet applied) on the module.
void setMixedPrecision(mlir::ModuleOp module, const MixedPrecisionPolicy &policy);

/// Rewrites every model function of `module` by its recorded policy, unless
/// there is none or it was already applied; then marks it applied. Emits a
/// diagnostic and fails on IR the policy cannot type (an op that mixes
/// element types the rewrite would have to guess).
mlir::LogicalResult applyMixedPrecision(mlir::ModuleOp module);

/// One compute-typed copy of each parameter per step: every later
/// `tfm.cast` of the same function argument to the same type (the casts of
/// other micro-batches, recomputed layers, a tied head) is replaced by the
/// first one, which stays alive until its last reader. Returns how many
/// casts were removed. --llm-pipeline-split runs it on every rank's function.
unsigned shareParameterCasts(mlir::func::FuncOp func);

/// The runtime's communicators move f32 tensors (and sum bf16 ones, and
/// all-gather bf16/f16 ones of an even per-rank count as f32 words): every
/// other collective (all-gather, reduce-scatter, max all-reduce) and pipeline
/// send/recv of a bf16/f16 tensor gets an explicit f32 cast on each side.
/// Run once all collectives exist (--llm-lower-to-exec does).
void legalizeCollectiveTypes(mlir::ModuleOp module);

} // namespace llmir::tfm

#endif // LLMIR_DIALECT_TFM_TRANSFORMS_MIXEDPRECISION_H
