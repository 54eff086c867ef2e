//===- ContextParallel.h - how attention exchanges K/V over cp ---*- C++ -*-===//
//
// Context parallelism's K/V exchange, chosen by --llm-partition cp-comm=: the
// attribute the partitioner puts on tfm.attention (and its VJP copies to
// tfm.attention_grad) that the exec lowering expands into the ring.
//
//===----------------------------------------------------------------------===//
#ifndef LLMIR_DIALECT_TFM_IR_CONTEXTPARALLEL_H
#define LLMIR_DIALECT_TFM_IR_CONTEXTPARALLEL_H

#include "mlir/IR/Operation.h"
#include "llvm/ADT/StringRef.h"

namespace llmir::tfm {

/// `cp_comm = "ring"`: K and V stay local (this rank's two zig-zag chunks)
/// and travel around the cp ring; absent: K and V are all-gathered over cp.
constexpr llvm::StringLiteral kCpCommAttrName = "cp_comm";
constexpr llvm::StringLiteral kCpRing = "ring";

inline bool isCpRing(mlir::Operation *op) {
  auto comm = op->getAttrOfType<mlir::StringAttr>(kCpCommAttrName);
  return comm && comm.getValue() == kCpRing;
}

} // namespace llmir::tfm

#endif // LLMIR_DIALECT_TFM_IR_CONTEXTPARALLEL_H
