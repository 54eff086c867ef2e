//===- ShardParameters.cpp - ZeRO-3 (FSDP) parameter sharding -------------===//
//
// Parameters stored as dp chunks, all-gathered per layer section ahead of
// use (see ShardParameters.h).
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/Transforms/ShardParameters.h"

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/MixedPrecision.h"

#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "llvm/ADT/MapVector.h"

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

namespace {

/// The step cut into sections: maximal runs of top-level ops with the same
/// `tfm.layer` (ops outside the layers form runs of their own). A layer's
/// forward and its backward are different sections.
struct Sections {
  explicit Sections(Block &body) {
    std::optional<int64_t> previous;
    for (Operation &op : body) {
      auto layer = op.getAttrOfType<IntegerAttr>("tfm.layer");
      int64_t key = layer ? layer.getInt() : -1;
      if (starts.empty() || key != previous)
        starts.push_back(&op);
      index[&op] = starts.size() - 1;
      previous = key;
    }
  }
  unsigned of(Operation *op, Block &body) const {
    return index.lookup(body.findAncestorOpInBlock(*op));
  }
  SmallVector<Operation *> starts;
  DenseMap<Operation *, unsigned> index;
};

class ParameterSharder {
public:
  ParameterSharder(func::FuncOp func, ZeroAxis axis, bool reshardAfterForward,
                   bool gatherPerStep)
      : func(func), body(func.getBody().front()), sections(body),
        b(func.getContext()), axis(axis),
        reshardAfterForward(reshardAfterForward), gatherPerStep(gatherPerStep) {}

  LogicalResult shard(BlockArgument param);

private:
  /// Points every use in `uses` (readers of the whole tensor of `type`) at
  /// an all-gather of `chunk` (its flat chunk over the ZeRO axis), one per
  /// section.
  void gatherFor(Value chunk, RankedTensorType type, ArrayRef<OpOperand *> uses);

  func::FuncOp func;
  Block &body;
  Sections sections;
  OpBuilder b;
  ZeroAxis axis; ///< dp, or cp without dp (lookupZeroAxis)
  bool reshardAfterForward;
  bool gatherPerStep; ///< zero3_gather = "step": one gather for all readers
};

void ParameterSharder::gatherFor(Value chunk, RankedTensorType type,
                                 ArrayRef<OpOperand *> uses) {
  // One gather per (micro-batch, section): without resharding a micro-batch
  // keeps its gather from its forward to its backward.
  llvm::MapVector<std::pair<int64_t, unsigned>, SmallVector<OpOperand *>> groups;
  for (OpOperand *use : uses) {
    Operation *top = body.findAncestorOpInBlock(*use->getOwner());
    auto microbatch = top->getAttrOfType<IntegerAttr>(kMicrobatchAttrName);
    std::pair<int64_t, unsigned> key = {microbatch ? microbatch.getInt() : -1,
                                        reshardAfterForward ? sections.of(top, body) : 0};
    groups[gatherPerStep ? std::make_pair<int64_t, unsigned>(-1, 0) : key].push_back(use);
  }
  Operation *def = chunk.getDefiningOp();
  auto flat = RankedTensorType::get({type.getNumElements()}, type.getElementType());
  for (auto &[section, group] : groups) {
    auto before = [&](OpOperand *x, OpOperand *y) {
      return body.findAncestorOpInBlock(*x->getOwner())
          ->isBeforeInBlock(body.findAncestorOpInBlock(*y->getOwner()));
    };
    llvm::sort(group, before);
    Operation *firstReader = body.findAncestorOpInBlock(*group.front()->getOwner());
    // Prefetch: issued where the previous section starts.
    unsigned s = sections.of(firstReader, body);
    Operation *issue = sections.starts[s > 0 ? s - 1 : 0];
    if (def && !def->isBeforeInBlock(issue)) // a compute copy cast there
      b.setInsertionPointAfter(def);
    else
      b.setInsertionPoint(issue);
    Value gathered = shard::AllGatherOp::create(
        b, chunk.getLoc(), flat, "grid", ArrayRef<int16_t>{axis.axis.index}, chunk,
        /*gather_axis=*/APInt(64, 0));
    if (flat != type) {
      b.setInsertionPoint(firstReader);
      gathered = ReshapeOp::create(b, chunk.getLoc(), type, gathered);
    }
    for (OpOperand *use : group)
      use->set(gathered);
  }
}

LogicalResult ParameterSharder::shard(BlockArgument param) {
  unsigned index = param.getArgNumber();
  if (!func.getArgAttr(index, TfmDialect::kParamAttrName) ||
      func.getArgAttr(index, kDpChunkOfAttrName))
    return success();
  auto type = cast<RankedTensorType>(param.getType());
  int64_t n = type.getNumElements();
  int64_t ranks = axis.axis.size;
  if (n % ranks != 0)
    return func.emitOpError() << "zero=3 needs every parameter's size to "
                                 "divide by "
                              << axis.name << "=" << ranks << "; parameter #"
                              << index << " has " << n << " elements";
  SmallVector<OpOperand *> readers;
  SmallVector<Operation *> regathers;
  SmallVector<CastOp> computeCopies;
  for (OpOperand &use : param.getUses()) {
    Operation *owner = use.getOwner();
    if (isa<ParamAllGatherOp>(owner))
      regathers.push_back(owner);
    else if (auto update = dyn_cast<AdamWUpdateOp>(owner);
             update && update.getParam() == param)
      continue; // updates the chunk in place
    else if (auto copy = dyn_cast<CastOp>(owner);
             copy && owner->getBlock() == &body)
      computeCopies.push_back(copy);
    else
      readers.push_back(&use);
  }
  auto chunkType = RankedTensorType::get({n / ranks}, type.getElementType());
  OpBuilder attrs(func.getContext());
  if (!func.getArgAttr(index, "llmir.global_shape"))
    func.setArgAttr(index, "llmir.global_shape",
                    attrs.getDenseI64ArrayAttr(type.getShape()));
  func.setArgAttr(index, kDpChunkOfAttrName,
                  attrs.getDenseI64ArrayAttr(type.getShape()));
  param.setType(chunkType);
  gatherFor(param, type, readers);
  // Mixed precision: cast the chunk, gather the compute type.
  for (CastOp copy : computeCopies) {
    auto computeType = cast<RankedTensorType>(copy.getType());
    b.setInsertionPoint(copy);
    Value narrowChunk = CastOp::create(
        b, copy.getLoc(), chunkType.clone(computeType.getElementType()), param);
    SmallVector<OpOperand *> uses = llvm::map_to_vector(
        copy.getResult().getUses(), [](OpOperand &u) { return &u; });
    gatherFor(narrowChunk, computeType, uses);
    copy.erase();
  }
  for (Operation *op : regathers)
    op->erase();
  for (Operation *user : param.getUsers())
    if (auto update = dyn_cast<AdamWUpdateOp>(user))
      update.removeShardAxisAttr();
  return success();
}

} // namespace

LogicalResult llmir::tfm::shardParametersOverDp(ModuleOp module,
                                                func::FuncOp func) {
  PlanAttr plan = getPlan(module);
  std::optional<ZeroAxis> axis = lookupZeroAxis(module);
  if (!plan || !plan.shardsParameters() || !axis ||
      func.isExternal() || func.getBody().getOps<AdamWUpdateOp>().empty())
    return success();
  shareParameterCasts(func);
  ParameterSharder sharder(func, *axis, plan.getReshardAfterForward(),
                           plan.getZero3Gather() == "step");
  for (BlockArgument param : func.getArguments())
    if (failed(sharder.shard(param)))
      return failure();
  func.setType(FunctionType::get(func.getContext(),
                                 func.getBody().front().getArgumentTypes(),
                                 func.getResultTypes()));
  return success();
}
