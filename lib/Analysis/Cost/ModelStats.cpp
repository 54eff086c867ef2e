//===- ModelStats.cpp - parameter, layer and FLOP counts ------------------===//

#include "llmir/Analysis/Cost/ModelStats.h"

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

namespace {

/// Product of factors with overflow detection.
std::optional<uint64_t> checkedProduct(std::initializer_list<uint64_t> factors) {
  uint64_t result = 1;
  bool overflow = false;
  for (uint64_t f : factors) {
    result = llvm::SaturatingMultiply(result, f, &overflow);
    if (overflow)
      return std::nullopt;
  }
  return result;
}

uint64_t numElements(Value v) {
  return static_cast<uint64_t>(cast<RankedTensorType>(v.getType()).getNumElements());
}

} // namespace

std::optional<uint64_t> llmir::getForwardMatmulFlops(Operation *op) {
  if (auto linear = dyn_cast<LinearOp>(op)) {
    uint64_t in = linear.getInFeatures(), out = linear.getOutFeatures();
    uint64_t tokens = in == 0 ? 0 : numElements(linear.getInput()) / in;
    return checkedProduct({2, tokens, in, out});
  }
  if (auto matmul = dyn_cast<MatmulOp>(op)) {
    ArrayRef<int64_t> a = matmul.getLhs().getType().getShape();
    uint64_t k = matmul.getTransposeA() ? a[a.size() - 2] : a.back();
    // result = batch * M * N elements, each a K-long dot product.
    return checkedProduct({2, numElements(matmul.getResult()), k});
  }
  if (auto attn = dyn_cast<AttentionOp>(op)) {
    ArrayRef<int64_t> q = attn.getQuery().getType().getShape();
    ArrayRef<int64_t> k = attn.getKey().getType().getShape();
    // QK^T and PV: each 2 * batch * heads * seq_q * seq_k * head_dim.
    return checkedProduct({4, static_cast<uint64_t>(q[0]),
                           static_cast<uint64_t>(q[1]),
                           static_cast<uint64_t>(k[1]),
                           static_cast<uint64_t>(q[2])});
  }
  return 0;
}

FailureOr<ModelStats> llmir::computeModelStats(func::FuncOp func) {
  ModelStats stats;
  bool overflow = false;
  for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i) {
    Value arg = func.getArgument(i);
    if (func.getArgAttr(i, TfmDialect::kParamAttrName))
      stats.params = llvm::SaturatingAdd(stats.params, numElements(arg), &overflow);
    auto input = func.getArgAttrOfType<StringAttr>(i, TfmDialect::kInputAttrName);
    if (input && input.getValue() == "input_ids")
      stats.tokens = numElements(arg);
  }
  func.walk([&](Operation *op) {
    if (isa<LayerOp>(op))
      ++stats.layers;
    std::optional<uint64_t> flops = getForwardMatmulFlops(op);
    if (!flops)
      overflow = true;
    else
      stats.forwardFlops =
          llvm::SaturatingAdd(stats.forwardFlops, *flops, &overflow);
  });
  stats.stepFlops = llvm::SaturatingMultiply(stats.forwardFlops, uint64_t(3),
                                             &overflow);
  if (overflow)
    return func.emitError() << "model statistics of @" << func.getSymName()
                            << " overflow 64-bit counters";
  return stats;
}
