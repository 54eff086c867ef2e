//===- TfmDialect.cpp - tfm dialect registration --------------------------===//

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

using namespace mlir;
using namespace llmir::tfm;

#include "llmir/Dialect/Tfm/IR/TfmDialect.cpp.inc"
#include "llmir/Dialect/Tfm/IR/TfmEnums.cpp.inc"

void TfmDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "llmir/Dialect/Tfm/IR/TfmOps.cpp.inc"
      >();
  registerAttributes();
}
