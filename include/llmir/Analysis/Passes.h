//===- Passes.h - cost-model passes (memory report, simulate, planner) -*- C++ -*-===//

#ifndef LLMIR_ANALYSIS_PASSES_H
#define LLMIR_ANALYSIS_PASSES_H

#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace llmir {

#define GEN_PASS_DECL
#include "llmir/Analysis/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "llmir/Analysis/Passes.h.inc"

} // namespace llmir

#endif // LLMIR_ANALYSIS_PASSES_H
