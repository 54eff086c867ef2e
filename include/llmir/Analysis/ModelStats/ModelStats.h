//===- ModelStats.h - parameter, layer and FLOP counts of a tfm model -*- C++ -*-===//
//
// Static counts used by --tfm-model-stats and the pipeline stage balancer (Stages.cpp).
// All counts are exact 64-bit integers; an overflow is reported, not wrapped.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_ANALYSIS_MODELSTATS_MODELSTATS_H
#define LLMIR_ANALYSIS_MODELSTATS_MODELSTATS_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Support/LLVM.h"

#include <cstdint>
#include <optional>

namespace llmir {

/// Forward matmul FLOPs of one op (linear, matmul, attention); 0 for ops that
/// do no matrix products. std::nullopt if the count overflows 64 bits.
std::optional<uint64_t> getForwardMatmulFlops(mlir::Operation *op);

struct ModelStats {
  uint64_t params = 0;       ///< elements of all tfm.param arguments
  uint64_t layers = 0;       ///< number of tfm.layer ops
  uint64_t tokens = 0;       ///< elements of the input_ids argument (0: none)
  uint64_t forwardFlops = 0; ///< forward matmul FLOPs
  uint64_t stepFlops = 0;    ///< 3 x forwardFlops (forward + backward)
};

/// Computes the stats of one model function; emits an error on `func` and
/// fails if a count overflows.
mlir::FailureOr<ModelStats> computeModelStats(mlir::func::FuncOp func);

} // namespace llmir

#endif // LLMIR_ANALYSIS_MODELSTATS_MODELSTATS_H
