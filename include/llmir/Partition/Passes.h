//===- Passes.h - partitioning passes ---------------------------*- C++ -*-===//

#ifndef LLMIR_PARTITION_PASSES_H
#define LLMIR_PARTITION_PASSES_H

#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace llmir {

#define GEN_PASS_DECL
#include "llmir/Partition/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "llmir/Partition/Passes.h.inc"

} // namespace llmir

#endif // LLMIR_PARTITION_PASSES_H
