//===- TfmDialect.cpp - tfm dialect registration --------------------------===//

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "llmir/Dialect/Tfm/IR/Plan.h"

#include "mlir/IR/BuiltinTypes.h"

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

/// The `tfm.model` metadata (what the cost model, the memory report and the
/// program file read) must be sizes, and must describe the attention ops the
/// module holds: their heads are the model's, or the model's split over the
/// plan's tp ranks.
static LogicalResult verifyModelAttr(Operation *op, Attribute value) {
  StringRef name = TfmDialect::kModelAttrName;
  auto model = dyn_cast<DictionaryAttr>(value);
  if (!model)
    return op->emitOpError() << "attribute '" << name
                             << "' must be a dictionary, found " << value;
  auto size = [&](StringRef key, int64_t min) -> FailureOr<int64_t> {
    Attribute a = model.get(key);
    if (!a)
      return int64_t(0); // absent: the passes that need it say so
    auto i = dyn_cast<IntegerAttr>(a);
    if (!i || i.getType().isInteger(1) || i.getInt() < min)
      return op->emitOpError()
             << "attribute '" << name << "': '" << key << "' must be "
             << (min > 0 ? "a positive" : "a non-negative") << " integer, found "
             << a;
    return i.getInt();
  };
  for (StringRef key : {"hidden_size", "ffn_hidden_size", "batch", "seq",
                        "max_positions"})
    if (failed(size(key, 1)))
      return failure();
  for (StringRef key : {"num_layers", "vocab_size"}) // 0 in custom models
    if (failed(size(key, 0)))
      return failure();
  FailureOr<int64_t> heads = size("num_heads", 1);
  FailureOr<int64_t> kvHeads = size("num_kv_heads", 1);
  FailureOr<int64_t> headDim = size("head_dim", 1);
  if (failed(heads) || failed(kvHeads) || failed(headDim))
    return failure();
  if (*heads && *kvHeads && *heads % *kvHeads != 0)
    return op->emitOpError() << "attribute '" << name << "': num_kv_heads = "
                             << *kvHeads << " does not divide num_heads = "
                             << *heads;
  if (!*heads)
    return success();
  int64_t tp = 1;
  if (auto module = dyn_cast<ModuleOp>(op))
    if (PlanAttr plan = llmir::getPlan(module))
      tp = plan.axisSize("tp");
  // Attention ops carry num_heads and num_kv_heads (the ropes' num_heads may
  // be either, so they are not compared).
  WalkResult walk = op->walk([&](Operation *att) {
    if (att == op || att->getDialect() != op->getContext()->getLoadedDialect<TfmDialect>())
      return WalkResult::advance();
    auto h = att->getAttrOfType<IntegerAttr>("num_heads");
    auto kv = att->getAttrOfType<IntegerAttr>("num_kv_heads");
    if (!h || !kv || h.getInt() < 1)
      return WalkResult::advance(); // the op's own verifier reports these
    int64_t split = *heads / h.getInt();
    bool agrees = *heads % h.getInt() == 0 && (split == 1 || split == tp) &&
                  (!*kvHeads || kv.getInt() * split == *kvHeads);
    if (agrees && *headDim && att->getNumOperands() > 0)
      if (auto q = dyn_cast<RankedTensorType>(att->getOperand(0).getType()))
        agrees = q.getRank() == 0 || q.isDynamicDim(q.getRank() - 1) ||
                 q.getShape().back() == h.getInt() * *headDim;
    if (agrees)
      return WalkResult::advance();
    InFlightDiagnostic diag = att->emitOpError()
                              << "has num_heads = " << h.getInt()
                              << ", num_kv_heads = " << kv.getInt()
                              << ", which disagree with the module's '" << name
                              << "' (num_heads = " << *heads;
    if (*kvHeads)
      diag << ", num_kv_heads = " << *kvHeads;
    if (*headDim)
      diag << ", head_dim = " << *headDim;
    diag << (tp > 1 ? ", split over tp = " + std::to_string(tp) : "") << ")";
    return WalkResult::interrupt();
  });
  return failure(walk.wasInterrupted());
}

LogicalResult TfmDialect::verifyOperationAttribute(Operation *op,
                                                   NamedAttribute attr) {
  if (attr.getName() == kModelAttrName)
    return verifyModelAttr(op, attr.getValue());
  return success();
}
