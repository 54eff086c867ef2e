//===- CostUtil.h - helpers private to the cost model's sources -*- C++ -*-===//

#ifndef LLMIR_LIB_ANALYSIS_COST_COSTUTIL_H
#define LLMIR_LIB_ANALYSIS_COST_COSTUTIL_H

#include "llvm/Support/Error.h"

namespace llmir::cost::detail {

inline constexpr double kGB = 1e9;
inline constexpr double kTera = 1e12;

inline llvm::Error fail(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

} // namespace llmir::cost::detail

#endif // LLMIR_LIB_ANALYSIS_COST_COSTUTIL_H
