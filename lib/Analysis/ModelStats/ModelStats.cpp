//===- ModelStats.cpp - parameter, layer and FLOP counts ------------------===//

#include "llmir/Analysis/ModelStats/ModelStats.h"

#include "llmir/Analysis/Cost/CheckedMath.h"

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"


using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

namespace {

/// Product of factors, std::nullopt on overflow.
std::optional<uint64_t> checkedProduct(std::initializer_list<uint64_t> factors) {
  CheckedInt result = 1;
  for (uint64_t f : factors)
    result *= f > uint64_t(INT64_MAX) ? CheckedInt(-1) : CheckedInt(int64_t(f));
  return result.get();
}

/// Element count of a shape prefix, checked: the tensor type's own
/// getNumElements() is an unchecked int64 product.
std::optional<uint64_t> checkedElements(ArrayRef<int64_t> shape) {
  CheckedInt result = 1;
  for (int64_t d : shape)
    result *= d;
  return result.get();
}

std::optional<uint64_t> numElements(Value v) {
  return checkedElements(cast<RankedTensorType>(v.getType()).getShape());
}

/// `sum += value`, remembering an overflow in `overflowed`.
void accumulate(uint64_t &sum, uint64_t value, bool &overflowed) {
  std::optional<uint64_t> total = (CheckedInt(int64_t(sum)) + CheckedInt(int64_t(value))).get();
  overflowed |= !total || value > uint64_t(INT64_MAX);
  sum = total.value_or(sum);
}

} // namespace

std::optional<uint64_t> llmir::getForwardMatmulFlops(Operation *op) {
  if (auto linear = dyn_cast<LinearOp>(op)) {
    uint64_t in = linear.getInFeatures(), out = linear.getOutFeatures();
    std::optional<uint64_t> tokens =
        checkedElements(linear.getInput().getType().getShape().drop_back());
    if (!tokens)
      return std::nullopt;
    return checkedProduct({2, *tokens, in, out});
  }
  if (auto matmul = dyn_cast<MatmulOp>(op)) {
    ArrayRef<int64_t> a = matmul.getLhs().getType().getShape();
    uint64_t k = matmul.getTransposeA() ? a[a.size() - 2] : a.back();
    // result = batch * M * N elements, each a K-long dot product.
    std::optional<uint64_t> outputs = numElements(matmul.getResult());
    if (!outputs)
      return std::nullopt;
    return checkedProduct({2, *outputs, k});
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
    std::optional<uint64_t> elements = numElements(arg);
    if (!elements) {
      overflow = true;
      break;
    }
    if (func.getArgAttr(i, TfmDialect::kParamAttrName))
      accumulate(stats.params, *elements, overflow);
    auto input = func.getArgAttrOfType<StringAttr>(i, TfmDialect::kInputAttrName);
    if (input && input.getValue() == "input_ids")
      stats.tokens = *elements;
  }
  func.walk([&](Operation *op) {
    if (isa<LayerOp>(op))
      ++stats.layers;
    std::optional<uint64_t> flops = getForwardMatmulFlops(op);
    if (!flops)
      overflow = true;
    else
      accumulate(stats.forwardFlops, *flops, overflow);
  });
  // Forward + backward (input and weight gradients) = 3 x forward.
  for (int i = 0; i < 3; ++i)
    accumulate(stats.stepFlops, stats.forwardFlops, overflow);
  if (overflow)
    return func.emitError() << "model statistics of @" << func.getSymName()
                            << " overflow 64-bit counters";
  return stats;
}
