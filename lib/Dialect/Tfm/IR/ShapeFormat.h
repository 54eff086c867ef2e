//===- ShapeFormat.h - shapes in tfm verifier messages ----------*- C++ -*-===//
//
// Private to lib/Dialect/Tfm/IR: the verifiers of TfmOps.cpp and
// TfmInferenceOps.cpp print shapes the same way.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_LIB_DIALECT_TFM_IR_SHAPEFORMAT_H
#define LLMIR_LIB_DIALECT_TFM_IR_SHAPEFORMAT_H

#include "mlir/Support/LLVM.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

namespace llmir::tfm {

/// "2x8x32" for a static shape ("scalar" for rank 0).
inline std::string formatShape(llvm::ArrayRef<int64_t> shape) {
  if (shape.empty())
    return "scalar";
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleave(shape, os, "x");
  return s;
}

} // namespace llmir::tfm

#endif // LLMIR_LIB_DIALECT_TFM_IR_SHAPEFORMAT_H
